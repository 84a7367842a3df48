//! Where the Redis data lives, one server or a Redis Cluster, and the connection to it. The
//! buffer, the relay's shared state store and its peer ack link all go through these two types,
//! so each of them runs on either without knowing which.
//!
//! On a cluster the client library (redis-rs `cluster-async`) follows the slot map: a command is
//! sent to the master serving its first key's slot, `MOVED`/`ASK` answers and a failover (a
//! replica promoted after its master went away) make it refresh the map and retry, within the
//! operation timeout.

use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use ::redis::cluster::{ClusterClient, ClusterClientBuilder};
use ::redis::cluster_async::ClusterConnection;
use ::redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use ::redis::{Cmd, ConnectionInfo, IntoConnectionInfo, Pipeline, RedisFuture, RedisResult, Value};

/// Retries of a command whose node failed, before the error reaches the caller. The client
/// waits a little longer before each, so a failover of a few seconds is ridden out while the
/// caller's operation timeout still bounds the whole.
const CLUSTER_RETRIES: u32 = 12;

/// One Redis server (`redis://`, `rediss://`, `unix://`) or the seed nodes of a Redis Cluster.
#[derive(Clone)]
pub enum Endpoint {
    /// A single server.
    Single(Box<::redis::Client>),
    /// A cluster, known by some of its nodes (any one that answers gives the whole map).
    Cluster(Arc<[ConnectionInfo]>),
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URLs may hold passwords.
        match self {
            Endpoint::Single(_) => f.write_str("Endpoint::Single"),
            Endpoint::Cluster(nodes) => write!(f, "Endpoint::Cluster({} nodes)", nodes.len()),
        }
    }
}

impl Endpoint {
    /// The cluster of `cluster_nodes` when that list is not empty, else the server at `url`.
    /// The error names what is wrong, never the URL itself (it may hold a password).
    pub fn open(url: &str, cluster_nodes: &[String]) -> Result<Endpoint, String> {
        if cluster_nodes.is_empty() {
            return ::redis::Client::open(url)
                .map(|client| Endpoint::Single(Box::new(client)))
                .map_err(|_| "not a valid Redis URL".to_owned());
        }
        let mut nodes = Vec::with_capacity(cluster_nodes.len());
        for (i, node) in cluster_nodes.iter().enumerate() {
            if !(node.starts_with("redis://") || node.starts_with("rediss://")) {
                return Err(format!(
                    "cluster node {} must be a redis:// or rediss:// URL",
                    i + 1
                ));
            }
            let info = node
                .as_str()
                .into_connection_info()
                .map_err(|_| format!("cluster node {} is not a valid Redis URL", i + 1))?;
            nodes.push(info);
        }
        // The builder checks what the nodes must share (credentials, TLS).
        cluster_builder(&nodes, Duration::from_secs(1))
            .build()
            .map_err(|e| format!("cluster nodes: {}", e.kind_str_safe()))?;
        Ok(Endpoint::Cluster(nodes.into()))
    }

    /// Whether this is a cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self, Endpoint::Cluster(_))
    }

    /// Connects; `timeout` bounds connecting and every later answer.
    pub async fn connect(&self, timeout: Duration) -> RedisResult<Conn> {
        match self {
            Endpoint::Single(client) => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout))
                    .set_number_of_retries(2);
                let manager =
                    ConnectionManager::new_with_config(client.as_ref().clone(), config).await?;
                Ok(Conn::Single(manager))
            }
            Endpoint::Cluster(nodes) => {
                let client = cluster_builder(nodes, timeout).build()?;
                Ok(Conn::Cluster(client.get_async_connection().await?))
            }
        }
    }
}

/// A cluster client of `nodes` with the project's timeouts and retries; callers add what they
/// need (a push sender for subscriptions).
pub(crate) fn cluster_builder(nodes: &[ConnectionInfo], timeout: Duration) -> ClusterClientBuilder {
    ClusterClient::builder(nodes.to_vec())
        .connection_timeout(timeout)
        .response_timeout(timeout)
        .retries(CLUSTER_RETRIES)
        .min_retry_wait(50)
        .max_retry_wait(1_000)
}

/// An error's kind without its detail (which may quote a URL).
trait KindOnly {
    fn kind_str_safe(&self) -> String;
}

impl KindOnly for ::redis::RedisError {
    fn kind_str_safe(&self) -> String {
        format!("{:?}", self.kind())
    }
}

/// A connection to an [`Endpoint`]; cheap to clone, clones share it. Reconnects by itself.
#[derive(Clone)]
pub enum Conn {
    /// To a single server.
    Single(ConnectionManager),
    /// To a cluster.
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Conn::Single(_) => "Conn::Single",
            Conn::Cluster(_) => "Conn::Cluster",
        })
    }
}

impl Conn {
    /// `WAIT replicas timeout` on the master that holds `key`: the number of its replicas that
    /// have every write sent so far on this connection.
    pub async fn wait_replicas(
        &mut self,
        key: &str,
        replicas: u32,
        timeout: Duration,
    ) -> RedisResult<i64> {
        let mut wait = ::redis::cmd("WAIT");
        wait.arg(replicas)
            .arg(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX));
        let reply = match self {
            Conn::Single(c) => c.send_packed_command(&wait).await?,
            Conn::Cluster(c) => {
                let route = Route::with_key(key.as_bytes(), SlotAddr::Master);
                c.route_command(
                    wait,
                    RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route)),
                )
                .await?
            }
        };
        Ok(::redis::from_redis_value(reply)?)
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}
