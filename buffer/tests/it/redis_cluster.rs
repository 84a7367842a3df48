//! The conformance suite on a Redis Cluster (`scripts/services.sh redis-cluster`: 3 masters
//! with a replica each on 7000-7005, or `WEBHOOK_CONNECT_TEST_REDIS_CLUSTER`), and what only a
//! cluster has: channels spread over the masters, each channel in one slot.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use webhook_connect_buffer::redis::maintenance::{cluster_masters, test_cluster_nodes};
use webhook_connect_buffer::{BufferError, RedisBuffer, RedisOptions, Settle};

use crate::conformance::conformance_suite;
use crate::redis::RedisHarness;
use crate::support::{Harness, ensure, lease, publish, settings};

conformance_suite!(RedisHarness::cluster());

/// The keys under `prefix` on each master, by master URL.
fn keys_by_master(prefix: &str) -> HashMap<String, Vec<String>> {
    let mut out = HashMap::new();
    for master in cluster_masters(&test_cluster_nodes()) {
        let client = redis::Client::open(master.as_str()).unwrap();
        let mut conn = client
            .get_connection_with_timeout(Duration::from_secs(2))
            .unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}:*"))
            .query(&mut conn)
            .unwrap();
        out.insert(master, keys);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_spread_over_the_masters_and_each_lives_on_one() {
    let h = RedisHarness::cluster();
    let b = h.open().await;
    let channels: Vec<String> = (0..24).map(|i| format!("spread-{i}")).collect();
    for c in &channels {
        ensure(&b, c, &["w", "v"], &settings()).await;
        publish(&b, c, "w", 1).await;
        publish(&b, c, "v", 2).await;
    }
    let by_master = keys_by_master(h.prefix());
    let holding: Vec<&String> = by_master
        .iter()
        .filter(|(_, keys)| !keys.is_empty())
        .map(|(m, _)| m)
        .collect();
    assert!(
        holding.len() >= 2,
        "24 channels all landed on one master: {by_master:?}"
    );
    for c in &channels {
        let tag = format!("{{{}:{c}}}", c.len());
        let masters: BTreeSet<&String> = by_master
            .iter()
            .filter(|(_, keys)| keys.iter().any(|k| k.contains(&tag)))
            .map(|(m, _)| m)
            .collect();
        assert_eq!(masters.len(), 1, "channel {c} is split over {masters:?}");
    }
    // And every message comes back.
    for c in &channels {
        let got = lease(&b, c, 10, 2_000).await;
        assert_eq!(got.len(), 2, "channel {c}");
        for l in got {
            b.settle(&l.token, Settle::Ack).await.unwrap();
        }
    }
}

#[tokio::test]
async fn cluster_node_urls_are_checked() {
    for bad in [
        vec!["unix:///tmp/redis.sock".to_owned()],
        vec!["http://127.0.0.1:7000".to_owned()],
        vec!["redis://127.0.0.1:7000".to_owned(), "nonsense".to_owned()],
    ] {
        let err = RedisBuffer::connect(RedisOptions {
            cluster_nodes: bad.clone(),
            ..RedisOptions::default()
        })
        .await;
        assert!(
            matches!(&err, Err(BufferError::Invalid(m)) if m.contains("cluster_nodes")),
            "{bad:?}: {err:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_waits_for_a_replica_when_asked() {
    let h = RedisHarness::cluster();
    let b = RedisBuffer::connect(RedisOptions {
        wait_replicas: 1,
        ..h.options()
    })
    .await
    .unwrap();
    let b: webhook_connect_buffer::SharedBuffer = std::sync::Arc::new(b);
    ensure(&b, "durable", &["w"], &settings()).await;
    publish(&b, "durable", "w", 1).await;
    // Two replicas are more than any master of the test cluster has: refused, not hung.
    let b2 = RedisBuffer::connect(RedisOptions {
        wait_replicas: 2,
        operation_timeout: Duration::from_millis(600),
        ..h.options()
    })
    .await
    .unwrap();
    let mut e = crate::support::envelope("durable", "w", 2);
    let err = webhook_connect_buffer::Buffer::publish(&b2, "w", &mut e).await;
    assert!(matches!(err, Err(BufferError::Unavailable(_))), "{err:?}");
}
