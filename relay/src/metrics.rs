//! Relay metrics in the Prometheus text format 0.0.4 (`docs/reference/http-api.md` §2.4).
//!
//! Counters and histograms are kept here and bumped by [`Metrics::event`]-style helpers next to
//! the log line they belong to; gauges (queue depth, in flight, connections, …) are read from the
//! buffer and the hubs at scrape time, so they are never stale. Label values come only from
//! configuration (channel and webhook names) or fixed sets, so label sets stay bounded.

use std::collections::BTreeMap;
use std::sync::Mutex;

use webhook_connect_protocol::exposition::{
    Histogram, write_family, write_histogram, write_runtime, write_sample,
};

type Key = (&'static str, Vec<(&'static str, String)>);

/// Counter and histogram families.
#[derive(Debug, Default)]
pub struct Metrics {
    counters: Mutex<BTreeMap<Key, u64>>,
    histograms: Mutex<BTreeMap<Key, Histogram>>,
}

fn key(name: &'static str, labels: &[(&'static str, &str)]) -> Key {
    (
        name,
        labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
    )
}

const HELP: &[(&str, &str, &str)] = &[
    (
        "webhook_relay_open_connections",
        "gauge",
        "Open client connections by kind: request, stream (connectors) and overflow.",
    ),
    (
        "webhook_relay_connections_refused_total",
        "counter",
        "Connections not admitted in full, by reason: limit (closed at once), overflow (health only), streams (stream share spent).",
    ),
    (
        "webhook_relay_connections_closed_total",
        "counter",
        "Connections the relay closed before their client was done, by reason: evicted, evicted_per_ip, header_timeout.",
    ),
    (
        "webhook_relay_ingest_requests_total",
        "counter",
        "Ingest requests by HTTP status.",
    ),
    (
        "webhook_relay_ingest_duration_seconds",
        "histogram",
        "Time from request start to response.",
    ),
    (
        "webhook_relay_end_to_end_seconds",
        "histogram",
        "Time from acceptance at ingest to the connector's ack, for acked messages.",
    ),
    (
        "webhook_relay_messages_accepted_total",
        "counter",
        "Messages stored.",
    ),
    (
        "webhook_relay_messages_delivered_total",
        "counter",
        "Leases created (deliveries and redeliveries).",
    ),
    (
        "webhook_relay_messages_acked_total",
        "counter",
        "Acked messages.",
    ),
    (
        "webhook_relay_messages_nacked_total",
        "counter",
        "Nacked messages.",
    ),
    (
        "webhook_relay_redeliveries_total",
        "counter",
        "Messages made pending again, by cause.",
    ),
    (
        "webhook_relay_dead_lettered_total",
        "counter",
        "Messages moved to dead letters, by reason.",
    ),
    (
        "webhook_relay_evictions_total",
        "counter",
        "Connections closed by the relay, by reason.",
    ),
    (
        "webhook_relay_protocol_errors_total",
        "counter",
        "Malformed client frames.",
    ),
    (
        "webhook_relay_buffer_errors_total",
        "counter",
        "Failed buffer operations.",
    ),
    (
        "webhook_relay_auth_failures_total",
        "counter",
        "Inbound authentication failures.",
    ),
    (
        "webhook_relay_body_budget_refusals_total",
        "counter",
        "Ingest bodies refused with 503 because limits.max_inflight_body_bytes was spent.",
    ),
    (
        "webhook_relay_body_bytes_in_use",
        "gauge",
        "Bytes of ingest bodies held in memory now (limits.max_inflight_body_bytes).",
    ),
    (
        "webhook_relay_queue_depth",
        "gauge",
        "Messages waiting, per webhook queue.",
    ),
    ("webhook_relay_in_flight", "gauge", "Leased messages."),
    ("webhook_relay_dead_letters", "gauge", "Dead-letter depth."),
    (
        "webhook_relay_oldest_message_age_seconds",
        "gauge",
        "Age of the oldest waiting message.",
    ),
    (
        "webhook_relay_connections",
        "gauge",
        "Registered connections.",
    ),
];

/// How much a scrape may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// Every label.
    Full,
    /// No label that names a channel, a webhook or an authentication method: each family is
    /// summed over them (gauges of ages take the maximum), so an anonymous scrape learns
    /// totals only.
    Aggregate,
}

/// Labels that [`Detail::Aggregate`] removes.
const NAMING_LABELS: [&str; 4] = ["channel", "webhook_id", "method", "namespace"];

fn without_names(labels: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
    labels
        .iter()
        .filter(|(k, _)| !NAMING_LABELS.contains(k))
        .cloned()
        .collect()
}

fn aggregate_counters(counters: BTreeMap<Key, u64>) -> BTreeMap<Key, u64> {
    let mut out = BTreeMap::new();
    for ((name, labels), value) in counters {
        *out.entry((name, without_names(&labels))).or_insert(0) += value;
    }
    out
}

fn aggregate_histograms(histograms: BTreeMap<Key, Histogram>) -> BTreeMap<Key, Histogram> {
    let mut out: BTreeMap<Key, Histogram> = BTreeMap::new();
    for ((name, labels), h) in histograms {
        out.entry((name, without_names(&labels)))
            .or_default()
            .merge(&h);
    }
    out
}

fn aggregate_gauges(gauges: Vec<GaugeSample>) -> Vec<GaugeSample> {
    let mut out: Vec<GaugeSample> = Vec::new();
    for g in gauges {
        let labels = without_names(&g.labels);
        match out
            .iter_mut()
            .find(|o| o.name == g.name && o.labels == labels)
        {
            Some(o) if g.name.ends_with("_age_seconds") => o.value = o.value.max(g.value),
            Some(o) => o.value += g.value,
            None => out.push(GaugeSample {
                name: g.name,
                labels,
                value: g.value,
            }),
        }
    }
    out
}

/// One gauge sample for [`Metrics::render`].
#[derive(Debug, Clone)]
pub struct GaugeSample {
    /// Family name.
    pub name: &'static str,
    /// Labels.
    pub labels: Vec<(&'static str, String)>,
    /// Value.
    pub value: f64,
}

impl Metrics {
    /// Adds `by` to a counter.
    pub fn add(&self, name: &'static str, labels: &[(&'static str, &str)], by: u64) {
        let mut map = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        *map.entry(key(name, labels)).or_insert(0) += by;
    }

    /// Adds one to a counter.
    pub fn inc(&self, name: &'static str, labels: &[(&'static str, &str)]) {
        self.add(name, labels, 1);
    }

    /// Records one observation (seconds) in a histogram.
    pub fn observe(&self, name: &'static str, labels: &[(&'static str, &str)], seconds: f64) {
        let mut map = self.histograms.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(key(name, labels)).or_default().observe(seconds);
    }

    /// The value of a counter.
    #[cfg(test)]
    pub fn counter(&self, name: &'static str, labels: &[(&'static str, &str)]) -> u64 {
        let map = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&key(name, labels)).copied().unwrap_or(0)
    }

    /// The text exposition of every family with every label.
    #[cfg(test)]
    pub fn render(&self, gauges: &[GaugeSample]) -> String {
        self.render_as(gauges, Detail::Full)
    }

    /// The text exposition of every family, with `gauges` read at scrape time and the label
    /// detail `detail`.
    pub fn render_as(&self, gauges: &[GaugeSample], detail: Detail) -> String {
        let mut counters = self
            .counters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut histograms = self
            .histograms
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut gauges = gauges.to_vec();
        if detail == Detail::Aggregate {
            counters = aggregate_counters(counters);
            histograms = aggregate_histograms(histograms);
            gauges = aggregate_gauges(gauges);
        }
        let mut out = String::new();
        for (family, kind, help) in HELP {
            write_family(&mut out, family, kind, help);
            match *kind {
                "counter" => {
                    for ((name, labels), value) in counters.iter().filter(|((n, _), _)| n == family)
                    {
                        write_sample(&mut out, name, labels, value);
                    }
                }
                "histogram" => {
                    for ((name, labels), h) in histograms.iter().filter(|((n, _), _)| n == family) {
                        write_histogram(&mut out, name, labels, h);
                    }
                }
                _ => {
                    for g in gauges.iter().filter(|g| g.name == *family) {
                        write_sample(&mut out, g.name, &g.labels, g.value);
                    }
                }
            }
        }
        write_runtime(&mut out, "webhook_relay", env!("CARGO_PKG_VERSION"));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_gauges_in_text_format() {
        let m = Metrics::default();
        m.inc(
            "webhook_relay_messages_acked_total",
            &[("channel", "orders")],
        );
        m.add(
            "webhook_relay_messages_acked_total",
            &[("channel", "orders")],
            2,
        );
        m.observe(
            "webhook_relay_ingest_duration_seconds",
            &[("webhook_id", "shop")],
            0.003,
        );
        let text = m.render(&[GaugeSample {
            name: "webhook_relay_connections",
            labels: vec![("channel", "orders".into()), ("protocol", "sse".into())],
            value: 2.0,
        }]);
        assert!(text.contains("webhook_relay_messages_acked_total{channel=\"orders\"} 3\n"));
        assert!(text.contains(
            "webhook_relay_ingest_duration_seconds_bucket{webhook_id=\"shop\",le=\"0.0025\"} 0\n"
        ));
        assert!(text.contains(
            "webhook_relay_ingest_duration_seconds_bucket{webhook_id=\"shop\",le=\"0.005\"} 1\n"
        ));
        assert!(
            text.contains("webhook_relay_ingest_duration_seconds_count{webhook_id=\"shop\"} 1\n")
        );
        assert!(
            text.contains("webhook_relay_connections{channel=\"orders\",protocol=\"sse\"} 2\n")
        );
        assert!(text.contains("# TYPE webhook_relay_queue_depth gauge\n"));
        assert!(text.contains(&format!(
            "webhook_relay_build_info{{version=\"{}\"}} 1\n",
            env!("CARGO_PKG_VERSION")
        )));
        assert_eq!(
            m.counter(
                "webhook_relay_messages_acked_total",
                &[("channel", "orders")]
            ),
            3
        );
    }

    #[test]
    fn aggregate_detail_sums_over_channel_webhook_and_method_names() {
        let m = Metrics::default();
        for (hook, status) in [("shop", "200"), ("other", "200"), ("shop", "401")] {
            m.inc(
                "webhook_relay_ingest_requests_total",
                &[("webhook_id", hook), ("status", status)],
            );
            m.observe(
                "webhook_relay_ingest_duration_seconds",
                &[("webhook_id", hook)],
                0.003,
            );
        }
        m.inc(
            "webhook_relay_auth_failures_total",
            &[("webhook_id", "shop"), ("method", "hmac")],
        );
        let gauges = [("orders", 3.0), ("billing", 4.0)].map(|(c, v)| GaugeSample {
            name: "webhook_relay_oldest_message_age_seconds",
            labels: vec![("channel", c.into())],
            value: v,
        });
        let text = m.render_as(&gauges, Detail::Aggregate);
        for name in [
            "shop",
            "other",
            "orders",
            "billing",
            "hmac",
            "webhook_id",
            "channel",
        ] {
            assert!(!text.contains(name), "{name} in\n{text}");
        }
        assert!(text.contains("webhook_relay_ingest_requests_total{status=\"200\"} 2\n"));
        assert!(text.contains("webhook_relay_ingest_requests_total{status=\"401\"} 1\n"));
        assert!(text.contains("webhook_relay_auth_failures_total 1\n"));
        assert!(text.contains("webhook_relay_ingest_duration_seconds_count 3\n"));
        assert!(text.contains("webhook_relay_oldest_message_age_seconds 4\n"));
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::default();
        m.inc("webhook_relay_evictions_total", &[("channel", "a\"b")]);
        assert!(m.render(&[]).contains("channel=\"a\\\"b\""));
    }
}
