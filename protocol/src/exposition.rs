//! The Prometheus text exposition (format 0.0.4) that the relay's and the connector's `/metrics`
//! share (`docs/reference/http-api.md` §2.4, §8): family headers, samples with escaped labels,
//! duration histograms on one bucket set, `*_build_info` and the standard `process_*` families.
//!
//! Writing is pure; [`ProcessStats::read`] is the one place that reads something (the process's
//! own `/proc` entries, Linux only).

use std::fmt::{Display, Write};

/// Upper bounds of every duration histogram, in seconds: from half a millisecond to a day, so
/// the time a message waited in a queue for hours still lands in a bucket of its own.
pub const DURATION_BUCKETS: [f64; 24] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 21600.0, 43200.0, 86400.0,
];

/// Cumulative bucket counts, count and sum of one histogram series on [`DURATION_BUCKETS`].
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Histogram {
    counts: [u64; DURATION_BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&mut self, value: f64) {
        for (count, bound) in self.counts.iter_mut().zip(DURATION_BUCKETS) {
            if value <= bound {
                *count += 1;
            }
        }
        self.count += 1;
        self.sum += value;
    }

    /// Adds `other`'s observations to this one.
    pub fn merge(&mut self, other: &Histogram) {
        for (total, count) in self.counts.iter_mut().zip(other.counts) {
            *total += count;
        }
        self.count += other.count;
        self.sum += other.sum;
    }

    /// Observations recorded.
    pub fn count(&self) -> u64 {
        self.count
    }
}

/// A label value with `\`, `"` and newlines escaped.
pub fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `{k="v",…}` (empty without labels), with `le` appended when given.
pub fn labels_text<K: AsRef<str>, V: AsRef<str>>(labels: &[(K, V)], le: Option<&str>) -> String {
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{}=\"{}\"", k.as_ref(), escape(v.as_ref())))
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

/// The `# HELP` and `# TYPE` lines of a family.
pub fn write_family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// One sample line.
pub fn write_sample<K: AsRef<str>, V: AsRef<str>>(
    out: &mut String,
    name: &str,
    labels: &[(K, V)],
    value: impl Display,
) {
    let _ = writeln!(out, "{name}{} {value}", labels_text(labels, None));
}

/// The `_bucket`, `_sum` and `_count` lines of one histogram series.
pub fn write_histogram<K: AsRef<str>, V: AsRef<str>>(
    out: &mut String,
    name: &str,
    labels: &[(K, V)],
    h: &Histogram,
) {
    for (bound, count) in DURATION_BUCKETS.iter().zip(h.counts) {
        let le = bound.to_string();
        let _ = writeln!(
            out,
            "{name}_bucket{} {count}",
            labels_text(labels, Some(&le))
        );
    }
    let _ = writeln!(
        out,
        "{name}_bucket{} {}",
        labels_text(labels, Some("+Inf")),
        h.count
    );
    let _ = writeln!(out, "{name}_sum{} {}", labels_text(labels, None), h.sum);
    let _ = writeln!(out, "{name}_count{} {}", labels_text(labels, None), h.count);
}

/// `{prefix}_build_info{version="…"} 1`: which build is running, to join on in queries.
pub fn write_build_info(out: &mut String, prefix: &str, version: &str) {
    let name = format!("{prefix}_build_info");
    write_family(
        out,
        &name,
        "gauge",
        "Always 1; the labels say which build runs.",
    );
    write_sample(out, &name, &[("version", version)], 1);
}

/// What the standard `process_*` families report.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessStats {
    /// User and system CPU time spent, seconds.
    pub cpu_seconds: f64,
    /// Resident memory, bytes.
    pub resident_memory_bytes: u64,
    /// Virtual memory, bytes.
    pub virtual_memory_bytes: u64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// The soft limit on file descriptors (`None` when unlimited).
    pub max_fds: Option<u64>,
    /// Start time since the Unix epoch, seconds.
    pub start_time_seconds: f64,
    /// Threads.
    pub threads: u64,
}

impl ProcessStats {
    /// Reads this process's statistics; `None` off Linux or when `/proc` cannot be read.
    #[cfg(target_os = "linux")]
    pub fn read() -> Option<ProcessStats> {
        let me = procfs::process::Process::myself().ok()?;
        let stat = me.stat().ok()?;
        let ticks = procfs::ticks_per_second() as f64;
        let boot = procfs::boot_time_secs().ok()? as f64;
        let max_fds = me
            .limits()
            .ok()
            .and_then(|l| match l.max_open_files.soft_limit {
                procfs::process::LimitValue::Value(v) => Some(v),
                procfs::process::LimitValue::Unlimited => None,
            });
        Some(ProcessStats {
            cpu_seconds: (stat.utime + stat.stime) as f64 / ticks,
            resident_memory_bytes: procfs::WithCurrentSystemInfo::get(stat.rss_bytes()),
            virtual_memory_bytes: stat.vsize,
            open_fds: me.fd_count().ok()? as u64,
            max_fds,
            start_time_seconds: boot + stat.starttime as f64 / ticks,
            threads: u64::try_from(stat.num_threads).unwrap_or(0),
        })
    }

    /// Reads this process's statistics; `None` off Linux or when `/proc` cannot be read.
    #[cfg(not(target_os = "linux"))]
    pub fn read() -> Option<ProcessStats> {
        None
    }
}

/// The `process_*` families of `stats` (the names every Prometheus client library uses).
pub fn write_process(out: &mut String, stats: &ProcessStats) {
    let no_labels: [(&str, &str); 0] = [];
    let mut family = |name: &str, kind: &str, help: &str, value: &dyn Display| {
        write_family(out, name, kind, help);
        write_sample(out, name, &no_labels, value);
    };
    family(
        "process_cpu_seconds_total",
        "counter",
        "Total user and system CPU time spent in seconds.",
        &stats.cpu_seconds,
    );
    family(
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
        &stats.resident_memory_bytes,
    );
    family(
        "process_virtual_memory_bytes",
        "gauge",
        "Virtual memory size in bytes.",
        &stats.virtual_memory_bytes,
    );
    family(
        "process_open_fds",
        "gauge",
        "Number of open file descriptors.",
        &stats.open_fds,
    );
    if let Some(max) = stats.max_fds {
        family(
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
            &max,
        );
    }
    family(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since unix epoch in seconds.",
        &stats.start_time_seconds,
    );
    family(
        "process_threads",
        "gauge",
        "Number of OS threads in the process.",
        &stats.threads,
    );
}

/// `{prefix}_build_info` and, where readable, the `process_*` families: what every `/metrics`
/// of the project ends with.
pub fn write_runtime(out: &mut String, prefix: &str, version: &str) {
    write_build_info(out, prefix, version);
    if let Some(stats) = ProcessStats::read() {
        write_process(out, &stats);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_hour_long_wait_lands_in_a_bucket_below_inf() {
        let mut h = Histogram::default();
        h.observe(2.0 * 3600.0 - 1.0);
        let mut out = String::new();
        write_histogram(&mut out, "x_seconds", &[("channel", "a")], &h);
        assert!(
            out.contains("x_seconds_bucket{channel=\"a\",le=\"3600\"} 0\n"),
            "{out}"
        );
        assert!(
            out.contains("x_seconds_bucket{channel=\"a\",le=\"7200\"} 1\n"),
            "{out}"
        );
        assert!(out.contains("x_seconds_count{channel=\"a\"} 1\n"), "{out}");
    }

    #[test]
    fn merged_histograms_add_up() {
        let (mut a, mut b) = (Histogram::default(), Histogram::default());
        a.observe(0.003);
        b.observe(100.0);
        a.merge(&b);
        assert_eq!(a.count(), 2);
        assert_eq!(a.counts[3], 1);
        assert_eq!(a.counts[DURATION_BUCKETS.len() - 1], 2);
    }

    #[test]
    fn labels_are_escaped() {
        assert_eq!(
            labels_text(&[("c", "a\"b\\\n")], None),
            "{c=\"a\\\"b\\\\\\n\"}"
        );
        let none: [(&str, &str); 0] = [];
        assert_eq!(labels_text(&none, Some("+Inf")), "{le=\"+Inf\"}");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn process_statistics_of_this_process_are_plausible() {
        let s = ProcessStats::read().expect("readable /proc");
        assert!(s.resident_memory_bytes > 1024 * 1024, "{s:?}");
        assert!(s.open_fds >= 3, "{s:?}");
        assert!(s.threads >= 1, "{s:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        assert!(
            s.start_time_seconds <= now + 1.0 && s.start_time_seconds > now - 86400.0,
            "{s:?}"
        );
        let mut out = String::new();
        write_runtime(&mut out, "demo", "1.2.3");
        assert!(
            out.contains("demo_build_info{version=\"1.2.3\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("# TYPE process_cpu_seconds_total counter\n"),
            "{out}"
        );
    }
}
