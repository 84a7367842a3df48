//! Channel settings: the `[channel_defaults]` table, per-channel overrides, and the resolved
//! values every channel runs with (`docs/reference/config-formats.md` §2.5).

use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use webhook_connect_buffer::QueueSettings;
use webhook_connect_protocol::config_values::lenient;

/// Channel settings as written in a file or request: every key optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelOverrides {
    /// Message lifetime, 1–2 592 000 s.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub ttl_seconds: Option<u64>,
    /// Live messages per webhook queue, 1–10 000 000.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub max_queue_size: Option<u64>,
    /// Raw body bytes, 1–`server.max_body_bytes`.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub max_message_size: Option<u64>,
    /// Leases per connection, 1–10 000.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub max_in_flight: Option<u64>,
    /// Connections, 1–10 000.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub max_connections: Option<u64>,
    /// Lease length, 1–3600 s.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub ack_timeout_seconds: Option<u64>,
    /// 1–100.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub max_delivery_attempts: Option<u64>,
    /// 5–300 s.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub heartbeat_interval_seconds: Option<u64>,
    /// At most one message in flight channel-wide.
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    pub ordered: Option<bool>,
    /// 0–3 600 000 ms.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub requeue_delay_initial_ms: Option<u64>,
    /// `requeue_delay_initial_ms`–3 600 000 ms.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub requeue_delay_max_ms: Option<u64>,
    /// `ack_timeout_seconds`–86 400 s.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub max_lease_seconds: Option<u64>,
    /// Connector-side allow-list (IP or CIDR), or null.
    #[serde(default)]
    pub allowed_ips: Option<Vec<String>>,
    /// Ingest limit for the whole channel, 1–1 000 000 per second, or null.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub rate_limit_per_second: Option<u64>,
}

/// The settings a channel runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelSettings {
    /// Message lifetime, seconds.
    pub ttl_seconds: u64,
    /// Per webhook queue.
    pub max_queue_size: u64,
    /// Raw body bytes.
    pub max_message_size: u64,
    /// Per connection.
    pub max_in_flight: u32,
    /// Connections of the channel.
    pub max_connections: u32,
    /// Lease length, seconds.
    pub ack_timeout_seconds: u64,
    /// Deliveries before dead-lettering.
    pub max_delivery_attempts: u32,
    /// Relay heartbeat period, seconds.
    pub heartbeat_interval_seconds: u64,
    /// One message in flight channel-wide.
    pub ordered: bool,
    /// First requeue delay.
    pub requeue_delay_initial_ms: u64,
    /// Largest requeue delay.
    pub requeue_delay_max_ms: u64,
    /// Longest lease extension, seconds.
    pub max_lease_seconds: u64,
    /// Connector allow-list; `None` allows every address.
    pub allowed_ips: Option<Vec<IpNet>>,
    /// Channel ingest rate limit.
    pub rate_limit_per_second: Option<u64>,
}

impl Default for ChannelSettings {
    fn default() -> Self {
        ChannelSettings {
            ttl_seconds: 86_400,
            max_queue_size: 10_000,
            max_message_size: 10 * 1024 * 1024,
            max_in_flight: 100,
            max_connections: 10,
            ack_timeout_seconds: 30,
            max_delivery_attempts: 10,
            heartbeat_interval_seconds: 30,
            ordered: false,
            requeue_delay_initial_ms: 500,
            requeue_delay_max_ms: 60_000,
            max_lease_seconds: 3600,
            allowed_ips: None,
            rate_limit_per_second: None,
        }
    }
}

/// Parses an IP or CIDR entry; a plain address becomes a host network.
pub fn parse_ip_net(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    text.parse::<std::net::IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("invalid IP address or CIDR range '{text}'"))
}

fn check_range(
    errors: &mut Vec<String>,
    path: &str,
    key: &str,
    value: Option<u64>,
    min: u64,
    max: u64,
) {
    if let Some(v) = value
        && !(min..=max).contains(&v)
    {
        errors.push(format!(
            "{path}{key}: must be between {min} and {max}, got {v}"
        ));
    }
}

impl ChannelOverrides {
    /// `self` over `base`: keys set here win.
    pub fn over(&self, base: &ChannelOverrides) -> ChannelOverrides {
        macro_rules! pick {
            ($($f:ident),*) => { ChannelOverrides { $($f: self.$f.clone().or_else(|| base.$f.clone())),* } };
        }
        pick!(
            ttl_seconds,
            max_queue_size,
            max_message_size,
            max_in_flight,
            max_connections,
            ack_timeout_seconds,
            max_delivery_attempts,
            heartbeat_interval_seconds,
            ordered,
            requeue_delay_initial_ms,
            requeue_delay_max_ms,
            max_lease_seconds,
            allowed_ips,
            rate_limit_per_second
        )
    }

    /// Checks every range; `path` prefixes each error (e.g. `channel_defaults.`).
    pub fn validate(&self, path: &str, max_body_bytes: u64) -> Vec<String> {
        let mut e = Vec::new();
        check_range(&mut e, path, "ttl_seconds", self.ttl_seconds, 1, 2_592_000);
        check_range(
            &mut e,
            path,
            "max_queue_size",
            self.max_queue_size,
            1,
            10_000_000,
        );
        check_range(
            &mut e,
            path,
            "max_message_size",
            self.max_message_size,
            1,
            max_body_bytes,
        );
        check_range(&mut e, path, "max_in_flight", self.max_in_flight, 1, 10_000);
        check_range(
            &mut e,
            path,
            "max_connections",
            self.max_connections,
            1,
            10_000,
        );
        check_range(
            &mut e,
            path,
            "ack_timeout_seconds",
            self.ack_timeout_seconds,
            1,
            3600,
        );
        check_range(
            &mut e,
            path,
            "max_delivery_attempts",
            self.max_delivery_attempts,
            1,
            100,
        );
        check_range(
            &mut e,
            path,
            "heartbeat_interval_seconds",
            self.heartbeat_interval_seconds,
            5,
            300,
        );
        check_range(
            &mut e,
            path,
            "requeue_delay_initial_ms",
            self.requeue_delay_initial_ms,
            0,
            3_600_000,
        );
        check_range(
            &mut e,
            path,
            "requeue_delay_max_ms",
            self.requeue_delay_max_ms,
            0,
            3_600_000,
        );
        check_range(
            &mut e,
            path,
            "max_lease_seconds",
            self.max_lease_seconds,
            1,
            86_400,
        );
        check_range(
            &mut e,
            path,
            "rate_limit_per_second",
            self.rate_limit_per_second,
            1,
            1_000_000,
        );
        if let Some(list) = &self.allowed_ips {
            for (i, entry) in list.iter().enumerate() {
                if let Err(msg) = parse_ip_net(entry) {
                    e.push(format!("{path}allowed_ips[{i}]: {msg}"));
                }
            }
        }
        e
    }

    /// The resolved settings (defaults for unset keys), with cross-key rules checked.
    pub fn resolve(&self, path: &str, max_body_bytes: u64) -> Result<ChannelSettings, Vec<String>> {
        let mut errors = self.validate(path, max_body_bytes);
        let d = ChannelSettings::default();
        let s = ChannelSettings {
            ttl_seconds: self.ttl_seconds.unwrap_or(d.ttl_seconds),
            max_queue_size: self.max_queue_size.unwrap_or(d.max_queue_size),
            max_message_size: self
                .max_message_size
                .unwrap_or(d.max_message_size.min(max_body_bytes)),
            max_in_flight: self
                .max_in_flight
                .map_or(d.max_in_flight, |v| v.min(10_000) as u32),
            max_connections: self
                .max_connections
                .map_or(d.max_connections, |v| v.min(10_000) as u32),
            ack_timeout_seconds: self.ack_timeout_seconds.unwrap_or(d.ack_timeout_seconds),
            max_delivery_attempts: self
                .max_delivery_attempts
                .map_or(d.max_delivery_attempts, |v| v.min(100) as u32),
            heartbeat_interval_seconds: self
                .heartbeat_interval_seconds
                .unwrap_or(d.heartbeat_interval_seconds),
            ordered: self.ordered.unwrap_or(d.ordered),
            requeue_delay_initial_ms: self
                .requeue_delay_initial_ms
                .unwrap_or(d.requeue_delay_initial_ms),
            requeue_delay_max_ms: self.requeue_delay_max_ms.unwrap_or(d.requeue_delay_max_ms),
            max_lease_seconds: self.max_lease_seconds.unwrap_or(d.max_lease_seconds),
            allowed_ips: self
                .allowed_ips
                .as_ref()
                .map(|l| l.iter().filter_map(|e| parse_ip_net(e).ok()).collect()),
            rate_limit_per_second: self.rate_limit_per_second,
        };
        if s.requeue_delay_max_ms < s.requeue_delay_initial_ms {
            errors.push(format!(
                "{path}requeue_delay_max_ms: must be at least requeue_delay_initial_ms ({}), got {}",
                s.requeue_delay_initial_ms, s.requeue_delay_max_ms
            ));
        }
        if s.max_lease_seconds < s.ack_timeout_seconds {
            errors.push(format!(
                "{path}max_lease_seconds: must be at least ack_timeout_seconds ({}), got {}",
                s.ack_timeout_seconds, s.max_lease_seconds
            ));
        }
        if errors.is_empty() {
            Ok(s)
        } else {
            Err(errors)
        }
    }
}

impl ChannelSettings {
    /// The buffer's view of these settings.
    pub fn queue_settings(&self) -> QueueSettings {
        QueueSettings {
            ttl: Duration::from_secs(self.ttl_seconds),
            max_queue_size: self.max_queue_size,
            max_message_size: self.max_message_size,
            max_delivery_attempts: self.max_delivery_attempts,
            ack_timeout: Duration::from_secs(self.ack_timeout_seconds),
            max_lease: Duration::from_secs(self.max_lease_seconds),
            requeue_delay_initial: Duration::from_millis(self.requeue_delay_initial_ms),
            requeue_delay_max: Duration::from_millis(self.requeue_delay_max_ms),
            ordered: self.ordered,
        }
    }

    /// Lease length.
    pub fn ack_timeout(&self) -> Duration {
        Duration::from_secs(self.ack_timeout_seconds)
    }

    /// Heartbeat period.
    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_secs(self.heartbeat_interval_seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_layer_and_resolve_with_defaults() {
        let defaults = ChannelOverrides {
            ack_timeout_seconds: Some(60),
            ..Default::default()
        };
        let channel = ChannelOverrides {
            max_queue_size: Some(5),
            ..Default::default()
        };
        let s = channel.over(&defaults).resolve("", 10 << 20).unwrap();
        assert_eq!(
            (s.ack_timeout_seconds, s.max_queue_size, s.max_in_flight),
            (60, 5, 100)
        );
    }

    #[test]
    fn ranges_and_cross_rules_are_checked_with_paths() {
        let bad = ChannelOverrides {
            ack_timeout_seconds: Some(0),
            requeue_delay_initial_ms: Some(1000),
            requeue_delay_max_ms: Some(10),
            allowed_ips: Some(vec!["10.0.0.0/24".into(), "nope".into()]),
            ..Default::default()
        };
        let errors = bad.resolve("channel_defaults.", 10 << 20).unwrap_err();
        assert!(errors.contains(
            &"channel_defaults.ack_timeout_seconds: must be between 1 and 3600, got 0".to_string()
        ));
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("channel_defaults.allowed_ips[1]: invalid IP"))
        );
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("channel_defaults.requeue_delay_max_ms"))
        );
    }

    #[test]
    fn ip_entries_accept_addresses_and_cidrs() {
        assert!(
            parse_ip_net("10.0.0.0/24")
                .unwrap()
                .contains(&"10.0.0.7".parse::<std::net::IpAddr>().unwrap())
        );
        assert_eq!(parse_ip_net("::1").unwrap().prefix_len(), 128);
        assert!(parse_ip_net("10.0.0.0/33").is_err());
    }
}
