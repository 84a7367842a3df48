//! A Redis Cluster master dies (SIGKILL) while webhooks stream in: its replica takes over,
//! ingest answers `503` only between the crash and the cluster serving again with a replica
//! behind every master, and every webhook answered `200` is delivered (`docs/redis-cluster.md`).
//!
//! The cluster is private to this test (`scripts/redis-cluster.sh` on ports 7100-7105, in a
//! temporary directory), so killing its masters disturbs no other test.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::delivery_http::{ack, poll};
use crate::support::{TOKEN, TestRelay, temp_dir};

const BASE_PORT: u16 = 7100;
/// Cluster node timeout: a master unreachable this long is failed over.
const NODE_TIMEOUT_MS: u32 = 2000;

/// A 3-master cluster with a replica per master; stopped and removed on drop.
struct PrivateCluster {
    dir: PathBuf,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/redis-cluster.sh")
}

impl PrivateCluster {
    fn start() -> PrivateCluster {
        let cluster = PrivateCluster {
            dir: temp_dir("redis-cluster"),
        };
        cluster.run_script("start");
        cluster
    }

    /// `scripts/redis-cluster.sh start` also restarts nodes that are down.
    fn run_script(&self, command: &str) {
        let out = Command::new("bash")
            .arg(script())
            .arg(command)
            .arg(BASE_PORT.to_string())
            .arg(&self.dir)
            .arg(NODE_TIMEOUT_MS.to_string())
            .output()
            .expect("run scripts/redis-cluster.sh");
        assert!(
            out.status.success(),
            "redis-cluster.sh {command}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn seeds() -> Vec<String> {
        (0..3)
            .map(|i| format!("redis://127.0.0.1:{}", BASE_PORT + i))
            .collect()
    }

    /// Any node that answers.
    fn connection() -> redis::Connection {
        for port in BASE_PORT..BASE_PORT + 6 {
            if let Ok(client) = redis::Client::open(format!("redis://127.0.0.1:{port}"))
                && let Ok(conn) = client.get_connection_with_timeout(Duration::from_secs(1))
            {
                return conn;
            }
        }
        panic!("no node of the private cluster answers");
    }

    /// The port of the master serving `key`'s slot, as the live nodes see it.
    fn master_port_of(key: &str) -> Option<u16> {
        let mut conn = Self::connection();
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut conn)
            .ok()?;
        let nodes: String = redis::cmd("CLUSTER").arg("NODES").query(&mut conn).ok()?;
        nodes.lines().find_map(|line| {
            let parts: Vec<&str> = line.split(' ').collect();
            let flags = parts.get(2)?;
            if !flags.split(',').any(|f| f == "master") || flags.contains("fail") {
                return None;
            }
            let serves = parts.iter().skip(8).any(|range| {
                let mut ends = range.split('-');
                let first = ends.next().and_then(|v| v.parse::<u16>().ok());
                let last = ends.next().and_then(|v| v.parse::<u16>().ok()).or(first);
                matches!((first, last), (Some(a), Some(b)) if (a..=b).contains(&slot))
            });
            let port = parts.get(1)?.split('@').next()?.rsplit(':').next()?;
            serves.then(|| port.parse().ok()).flatten()
        })
    }

    /// SIGKILL of the node on `port`: a crash, no chance to hand anything over.
    fn kill(port: u16) {
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
        let mut conn = client.get_connection().unwrap();
        let info: String = redis::cmd("INFO").arg("server").query(&mut conn).unwrap();
        let pid = info
            .lines()
            .find_map(|l| l.strip_prefix("process_id:"))
            .map(|p| p.trim().to_owned())
            .expect("process_id in INFO");
        let status = Command::new("kill").arg("-9").arg(&pid).status().unwrap();
        assert!(status.success(), "kill -9 {pid}");
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(BASE_PORT.to_string())
            .arg(&self.dir)
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_master_loses_nothing_accepted_and_ingest_answers_503_only_meanwhile() {
    let cluster = PrivateCluster::start();
    let prefix = format!("wc_failover_{:08x}", rand::random::<u32>());
    let nodes: Vec<String> = PrivateCluster::seeds()
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect();
    let target = format!(
        "cluster_nodes = [{}]\nwait_replicas = 1\noperation_timeout_ms = 2000",
        nodes.join(", ")
    );
    let relay = TestRelay::start_on_redis_toml(&target, &prefix, "failover", "", "").await;
    let channel_key = format!("{prefix}:{{6:orders}}:meta");

    let mut accepted: BTreeSet<String> = BTreeSet::new();
    let mut refused_at: Vec<Duration> = Vec::new();
    let mut killed: Option<(Instant, u16)> = None;
    let mut restarted = false;
    let mut after_recovery = 0;
    let started = Instant::now();
    let mut n = 0u64;
    while after_recovery < 100 {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "ingest did not recover: {} accepted, {} refused",
            accepted.len(),
            refused_at.len()
        );
        n += 1;
        let response = relay.post("shop", &format!("{{\"n\":{n}}}")).await;
        match response.status().as_u16() {
            200 => {
                let v: serde_json::Value = response.json().await.unwrap();
                accepted.insert(v["message_id"].as_str().unwrap().to_owned());
                if restarted {
                    after_recovery += 1;
                }
            }
            503 => {
                let (at, _) = killed.expect("503 before anything failed");
                refused_at.push(at.elapsed());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => panic!("ingest answered {other}: {:?}", response.text().await),
        }
        if killed.is_none() && accepted.len() >= 200 {
            let port = PrivateCluster::master_port_of(&channel_key).expect("channel's master");
            PrivateCluster::kill(port);
            killed = Some((Instant::now(), port));
        }
        if let Some((_, port)) = killed
            && !restarted
            && PrivateCluster::master_port_of(&channel_key).is_some_and(|p| p != port)
        {
            // The replica took over; the crashed node comes back as its replica, so writes
            // can be confirmed by a replica again.
            cluster.run_script("start");
            restarted = true;
        }
    }
    let (killed_at, _) = killed.expect("a master was killed");
    let window = refused_at.iter().max().copied().unwrap_or_default();
    assert!(
        window < Duration::from_secs(60),
        "503s went on for {window:?} after the crash"
    );
    assert!(
        killed_at.elapsed() > window,
        "every 503 came after the crash"
    );

    // Everything accepted comes out, across the failover.
    let mut delivered: BTreeSet<String> = BTreeSet::new();
    let drain_started = Instant::now();
    while !accepted.is_subset(&delivered) {
        assert!(
            drain_started.elapsed() < Duration::from_secs(60),
            "{} accepted webhooks never delivered",
            accepted.difference(&delivered).count()
        );
        let response = poll(&relay, "timeout=2&max_messages=100", "drain").await;
        if response.status() != 200 {
            continue;
        }
        let body: serde_json::Value = response.json().await.unwrap();
        let session = body["connection_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        for m in body["messages"].as_array().cloned().unwrap_or_default() {
            let Some(id) = m["message_id"].as_str() else {
                continue;
            };
            let (status, text) = ack(&relay, &session, &format!("message_id={id}"), TOKEN).await;
            assert_eq!(status, 200, "{text}");
            delivered.insert(id.to_owned());
        }
    }
}
