//! Resident memory of processes, read from `/proc`, and a sampler that keeps each process's
//! peak while a measurement runs.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Resident memory of process `pid`, MB (NaN when it cannot be read).
pub fn rss_of(pid: u32) -> f64 {
    rss_in(&format!("/proc/{pid}/status"))
}

/// Resident memory of this process, MB (NaN when it cannot be read).
pub fn own_rss() -> f64 {
    rss_in("/proc/self/status")
}

/// The `VmRSS` line of a `/proc/*/status` file, MB.
fn rss_in(status_file: &str) -> f64 {
    std::fs::read_to_string(status_file)
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(str::to_owned)
        })
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// Samples the RSS of some processes every period until [`PeakRss::finish`].
pub struct PeakRss {
    peaks: Arc<Mutex<Vec<f64>>>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl PeakRss {
    /// Starts sampling `pids` every `every`.
    pub fn watch(pids: &[u32], every: Duration) -> Self {
        let pids = pids.to_vec();
        let peaks = Arc::new(Mutex::new(vec![0.0f64; pids.len()]));
        let stop = CancellationToken::new();
        let task = {
            let (peaks, stop) = (peaks.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.is_cancelled() {
                    let now: Vec<f64> = pids.iter().map(|&pid| rss_of(pid)).collect();
                    if let Ok(mut p) = peaks.lock() {
                        for (peak, rss) in p.iter_mut().zip(now) {
                            // `f64::max` ignores a NaN (an unreadable sample).
                            *peak = peak.max(rss);
                        }
                    }
                    tokio::time::sleep(every).await;
                }
            })
        };
        PeakRss { peaks, stop, task }
    }

    /// Stops sampling; the peak of each process, MB, in the order given to `watch`.
    pub async fn finish(self) -> Vec<f64> {
        self.stop.cancel();
        let _ = self.task.await;
        self.peaks.lock().map(|p| p.clone()).unwrap_or_default()
    }
}
