//! A relay (embedded store in a temporary directory) and a connector started in this process,
//! for end-to-end tests.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use webhook_connect_buffer::{Buffer, RabbitBuffer, RabbitOptions};
use webhook_connector::config::{ChannelConfig, Protocol, TargetConfig};
use webhook_connector::{ConnectorConfig, ConnectorHandle, RunOutcome};
use webhook_relay::StartError;
use webhook_relay::config::{FlagOverrides, LoadOptions, load};

/// A temporary directory removed on drop.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A fresh directory named after `tag`.
    pub fn new(tag: &str) -> std::io::Result<TempDir> {
        let dir = std::env::temp_dir().join(format!(
            "wc-e2e-{tag}-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir)?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running relay.
#[derive(Debug)]
pub struct Relay {
    /// Where it listens.
    pub addr: SocketAddr,
    /// `http://addr`.
    pub base: String,
    shutdown: CancellationToken,
    join: Option<JoinHandle<Result<(), StartError>>>,
}

impl Relay {
    /// Starts a relay whose config file is `toml` (its `[buffer.embedded] path` should point
    /// into `dir`), listening on `listen` (`127.0.0.1:0` for any port).
    pub async fn start(dir: &Path, toml: &str, listen: &str) -> Result<Relay, String> {
        let path = dir.join("relay.toml");
        std::fs::write(&path, toml).map_err(|e| e.to_string())?;
        let config = load(&LoadOptions {
            config_path: Some(path),
            flags: FlagOverrides::default(),
            env: vec![],
        })
        .map_err(|e| e.to_string())?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| e.to_string())?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let shutdown = CancellationToken::new();
        let join = tokio::spawn(webhook_relay::run(config, listener, shutdown.clone()));
        Ok(Relay {
            addr,
            base: format!("http://{addr}"),
            shutdown,
            join: Some(join),
        })
    }

    /// Stops it gracefully and waits (at most 30 s).
    pub async fn stop(&mut self) -> Result<(), String> {
        self.shutdown.cancel();
        match self.join.take() {
            Some(join) => match tokio::time::timeout(Duration::from_secs(30), join).await {
                Ok(Ok(Ok(()))) => Ok(()),
                Ok(Ok(Err(e))) => Err(e.to_string()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("relay did not stop within 30 s".into()),
            },
            None => Ok(()),
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Which buffer a test relay uses.
#[derive(Debug, Clone)]
pub enum Backend {
    /// The embedded store in the test directory.
    Embedded,
    /// Redis at `WEBHOOK_CONNECT_TEST_REDIS_URL` (default `redis://127.0.0.1:6379/0`) under a
    /// key prefix unique to the test.
    Redis {
        /// Key prefix.
        prefix: String,
    },
    /// RabbitMQ at `WEBHOOK_CONNECT_TEST_RABBITMQ_URL` (default
    /// `amqp://guest:guest@127.0.0.1:5672/%2f`) under an exchange name unique to the test.
    RabbitMq {
        /// Exchange name, also the prefix of every queue.
        exchange: String,
    },
}

impl Backend {
    /// Redis with a fresh unique prefix.
    pub fn redis() -> Backend {
        Backend::Redis {
            prefix: format!("wc_e2e_{:016x}", rand::random::<u64>()),
        }
    }

    /// The same kind of backend with its own fresh prefix or exchange (for one more relay).
    pub fn fresh(&self) -> Backend {
        match self {
            Backend::Embedded => Backend::Embedded,
            Backend::Redis { .. } => Backend::redis(),
            Backend::RabbitMq { .. } => Backend::rabbitmq(),
        }
    }

    /// RabbitMQ with a fresh unique exchange.
    pub fn rabbitmq() -> Backend {
        Backend::RabbitMq {
            exchange: format!("wc_e2e_{:016x}", rand::random::<u64>()),
        }
    }

    /// The broker URL the RabbitMQ backend uses.
    pub fn rabbitmq_url() -> String {
        std::env::var("WEBHOOK_CONNECT_TEST_RABBITMQ_URL")
            .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
    }

    /// The server URL the Redis backend uses.
    pub fn redis_url() -> String {
        std::env::var("WEBHOOK_CONNECT_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
    }

    /// The `[buffer]` text for this backend.
    pub fn toml(&self, dir: &Path) -> String {
        match self {
            Backend::Embedded => format!(
                "[buffer.embedded]\npath = \"{}\"\ncommit_max_delay_ms = 1\n",
                dir.join("relay.db").display()
            ),
            Backend::Redis { prefix } => format!(
                "[buffer]\nbackend = \"redis\"\n[buffer.redis]\nurl = \"{}\"\nkey_prefix = \"{prefix}\"\n",
                Self::redis_url()
            ),
            Backend::RabbitMq { exchange } => format!(
                "[buffer]\nbackend = \"rabbitmq\"\n[buffer.rabbitmq]\nurl = \"{}\"\nexchange = \"{exchange}\"\n",
                Self::rabbitmq_url()
            ),
        }
    }

    /// Deletes what the test left in the backend: every key under its prefix on Redis, every
    /// queue and exchange under its exchange name on RabbitMQ.
    pub async fn cleanup(&self) {
        match self {
            Backend::Embedded => {}
            Backend::Redis { prefix } => Self::cleanup_redis(prefix).await,
            Backend::RabbitMq { exchange } => {
                let options = RabbitOptions {
                    url: Self::rabbitmq_url(),
                    exchange: exchange.clone(),
                    ..RabbitOptions::default()
                };
                if let Ok(b) = RabbitBuffer::connect(options).await {
                    let _ = b.destroy_all().await;
                    let _ = b.close().await;
                }
            }
        }
    }

    async fn cleanup_redis(prefix: &str) {
        let Ok(client) = redis::Client::open(Self::redis_url()) else {
            return;
        };
        let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
            return;
        };
        let pattern = format!("{prefix}:*");
        let keys: Vec<String> = match redis::cmd("KEYS")
            .arg(&pattern)
            .query_async(&mut conn)
            .await
        {
            Ok(k) => k,
            Err(_) => return,
        };
        if !keys.is_empty() {
            let _: Result<u64, _> = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await;
        }
    }
}

/// A relay config with `backend`, a state file under `dir` and the given `[[channels]]` text.
pub fn relay_toml_with(dir: &Path, backend: &Backend, channels: &str) -> String {
    format!(
        "[server]\nshutdown_grace_seconds = 2\n{}[state]\npath = \"{}\"\n\n{channels}",
        backend.toml(dir),
        dir.join("state.json").display()
    )
}

/// A relay config with one embedded store under `dir` and the given `[[channels]]` text.
pub fn relay_toml(dir: &Path, channels: &str) -> String {
    format!(
        "[server]\nshutdown_grace_seconds = 2\n[buffer.embedded]\npath = \"{}\"\ncommit_max_delay_ms = 1\n[state]\npath = \"{}\"\n\n{channels}",
        dir.join("relay.db").display(),
        dir.join("state.json").display()
    )
}

/// A running connector.
#[derive(Debug)]
pub struct Connector {
    shutdown: CancellationToken,
    handle: Option<ConnectorHandle>,
}

impl Connector {
    /// Starts a connector for `channel` on `relay_base`, forwarding every webhook id to
    /// `target_url`, over `protocol`.
    pub async fn start(
        relay_base: &str,
        channel: &str,
        token: &str,
        protocol: Protocol,
        target_url: &str,
    ) -> Result<Connector, String> {
        let mut ch = ChannelConfig::new(channel, token);
        ch.protocol = protocol;
        ch.default_target = Some(TargetConfig::new(target_url));
        let mut config = ConnectorConfig::new(relay_base, ch);
        config.reconnect.initial = Duration::from_millis(100);
        config.reconnect.max = Duration::from_millis(500);
        config.drain_timeout = Duration::from_secs(5);
        Self::start_with(config).await
    }

    /// Starts a connector with a full configuration.
    pub async fn start_with(config: ConnectorConfig) -> Result<Connector, String> {
        let shutdown = CancellationToken::new();
        let handle = webhook_connector::start(config, shutdown.clone())
            .await
            .map_err(|e| e.to_string())?;
        Ok(Connector {
            shutdown,
            handle: Some(handle),
        })
    }

    /// Where its health listener listens, when `health_listen` was set.
    pub fn health_addr(&self) -> Option<std::net::SocketAddr> {
        self.handle.as_ref().and_then(|h| h.health_addr)
    }

    /// Drains and stops it.
    pub async fn stop(&mut self) -> Option<RunOutcome> {
        self.shutdown.cancel();
        match self.handle.take() {
            Some(h) => tokio::time::timeout(Duration::from_secs(30), h.wait())
                .await
                .ok(),
            None => None,
        }
    }
}

impl Drop for Connector {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
