//! Blocking helpers for tools and tests that visit the servers directly rather than through
//! the backend: the masters of a Redis Cluster, and deleting every key under a prefix (from a
//! `Drop`, where no runtime can be awaited), and where the local test cluster is. Not used by
//! the relay itself.

use std::time::Duration;

/// Seed nodes of the local test cluster (`scripts/services.sh redis-cluster`: masters on
/// 7000-7002), or the comma-separated URLs in `WEBHOOK_CONNECT_TEST_REDIS_CLUSTER`.
pub fn test_cluster_nodes() -> Vec<String> {
    std::env::var("WEBHOOK_CONNECT_TEST_REDIS_CLUSTER")
        .unwrap_or_else(|_| {
            "redis://127.0.0.1:7000,redis://127.0.0.1:7001,redis://127.0.0.1:7002".into()
        })
        .split(',')
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
        .collect()
}

/// How long each step may take before the helper gives up (they are best effort).
const STEP: Duration = Duration::from_secs(2);

fn connect(url: &str) -> Option<::redis::Connection> {
    let client = ::redis::Client::open(url).ok()?;
    let conn = client.get_connection_with_timeout(STEP).ok()?;
    conn.set_read_timeout(Some(STEP)).ok()?;
    Some(conn)
}

/// The `redis://host:port` URLs of the masters (not failed) of the cluster that one of `seeds`
/// belongs to, from `CLUSTER NODES` of the first seed that answers; empty when none does.
pub fn cluster_masters(seeds: &[String]) -> Vec<String> {
    for seed in seeds {
        let Some(mut conn) = connect(seed) else {
            continue;
        };
        let Ok(nodes) = ::redis::cmd("CLUSTER")
            .arg("NODES")
            .query::<String>(&mut conn)
        else {
            continue;
        };
        return nodes.lines().filter_map(master_of_line).collect();
    }
    Vec::new()
}

/// The URL of the node on a `CLUSTER NODES` line (`id host:port@bus flags …`) when it is a
/// master that is not failing.
fn master_of_line(line: &str) -> Option<String> {
    let mut parts = line.split(' ');
    let address = parts.nth(1)?;
    let flags = parts.next()?;
    let master = flags.split(',').any(|f| f == "master");
    let failing = flags.split(',').any(|f| f == "fail" || f == "fail?");
    let host_port = address.split('@').next()?;
    (master && !failing).then(|| format!("redis://{host_port}"))
}

/// Deletes every key matching `pattern` on the server at `url`. On a cluster node that is the
/// node's own keys; call it for every master.
pub fn delete_keys(url: &str, pattern: &str) {
    let Some(mut conn) = connect(url) else {
        return;
    };
    let mut cursor: u64 = 0;
    loop {
        let Ok((next, keys)) = ::redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query::<(u64, Vec<String>)>(&mut conn)
        else {
            return;
        };
        // One by one: on a cluster node, keys of different slots cannot share a DEL.
        for key in keys {
            let _ = ::redis::cmd("DEL").arg(&key).query::<i64>(&mut conn);
        }
        if next == 0 {
            return;
        }
        cursor = next;
    }
}

/// Deletes every key matching `pattern` on the server at `url`, or on every master of the
/// cluster of `cluster_nodes` when that is not empty.
pub fn delete_keys_everywhere(url: &str, cluster_nodes: &[String], pattern: &str) {
    if cluster_nodes.is_empty() {
        delete_keys(url, pattern);
    } else {
        for master in cluster_masters(cluster_nodes) {
            delete_keys(&master, pattern);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_live_masters_are_listed() {
        let lines = [
            "a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460",
            "b2 127.0.0.1:7003@17003 slave a1 0 0 1 connected",
            "c3 127.0.0.1:7001@17001 master,fail - 0 0 2 connected",
            "d4 127.0.0.1:7004@17004 master - 0 0 4 connected 5461-10922",
        ];
        let got: Vec<String> = lines.iter().filter_map(|l| master_of_line(l)).collect();
        assert_eq!(got, ["redis://127.0.0.1:7000", "redis://127.0.0.1:7004"]);
    }
}
