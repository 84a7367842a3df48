//! The Redis server settings and client that `redis_publish` and `redis_rq` share
//! (`modules.md` §3.7, §3.8): one multiplexed, self-reconnecting connection per server, pooled
//! through [`SharedClients`](super::shared::SharedClients) so every instance naming the same
//! connection entry uses it. No `PING` before each command.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisError};
use serde_json::{Map, Value};
use webhook_connect_protocol::config_values::Secret;

use super::endpoint::{self, within};
use super::shared::client_key;
use super::{ErrorCategory, ModuleSettings, OutputError};
use crate::config::Problems;
use crate::config::reader::Reader;

/// Bound on connecting and on each command.
pub(crate) const REDIS_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and how to connect.
#[derive(Debug, Clone)]
pub(crate) struct RedisServer {
    key: String,
    target: Target,
}

#[derive(Debug, Clone)]
enum Target {
    Url(Secret),
    Fields {
        host: String,
        port: u16,
        db: i64,
        username: Option<String>,
        password: Option<Secret>,
    },
}

impl RedisServer {
    /// The server of the `connection` entry (`host`, `port`, `db`, `username`, `password`,
    /// `url`); the defaults (`localhost:6379`, db 0) when the module names no connection.
    pub(crate) fn from_connection(s: &ModuleSettings<'_>, p: &mut Problems) -> Option<Self> {
        let empty = Map::new();
        let entry = s.connection.unwrap_or(&empty);
        let name = s.connection_name.unwrap_or("<default>");
        let mut r = endpoint::connection(s);
        let url = endpoint::url(&mut r, p, "url", &["redis", "rediss"], s.outbound_strict);
        let fields = Self::fields(&mut r, p, s.outbound_strict, &[]);
        if r.boolean(p, "tls", false) && url.is_none() {
            r.error(
                p,
                "tls",
                "TLS to Redis needs a rediss:// url, and this build has no Redis TLS support",
            );
        }
        if url
            .as_ref()
            .is_some_and(|u| u.expose().to_ascii_lowercase().starts_with("rediss:"))
        {
            r.error(p, "url", "this build has no Redis TLS support (rediss://)");
        }
        r.finish(p, false);
        let target = match url {
            Some(u) => Target::Url(u),
            None => fields?,
        };
        Some(RedisServer {
            key: client_key("redis", name, entry),
            target,
        })
    }

    /// The server of a webhook-level `redis` object (`host` `"localhost"`, `port` 6379,
    /// `allowed_hosts`), read through `r`, as the original read it.
    pub(crate) fn from_webhook_object(
        r: &mut Reader<'_>,
        p: &mut Problems,
        object: &Map<String, Value>,
        strict: bool,
    ) -> Option<Self> {
        let allowed = r.string_list(p, "allowed_hosts").unwrap_or_default();
        let target = Self::fields(r, p, strict, &allowed)?;
        Some(RedisServer {
            key: client_key("redis", "<webhook redis>", object),
            target,
        })
    }

    fn fields(
        r: &mut Reader<'_>,
        p: &mut Problems,
        strict: bool,
        allowed: &[String],
    ) -> Option<Target> {
        let host = endpoint::host(r, p, "host", Some("localhost"), strict, allowed);
        let port = endpoint::port(r, p, "port", 6379);
        let db = r.integer_in(p, "db", 0, 0, 1 << 20);
        let username = r.string(p, "username");
        let password = endpoint::secret(r, p, "password");
        Some(Target::Fields {
            host: host?,
            port,
            db,
            username,
            password,
        })
    }

    /// The shared client for this server, connecting when no live one exists.
    pub(crate) async fn client(
        &self,
        s: &super::shared::SharedClients,
    ) -> Result<Arc<RedisClient>, OutputError> {
        s.get_or_connect(&self.key, || self.connect()).await
    }

    fn connection_info(&self) -> Result<ConnectionInfo, RedisError> {
        match &self.target {
            Target::Url(url) => url.expose().into_connection_info(),
            Target::Fields {
                host,
                port,
                db,
                username,
                password,
            } => {
                let info = ConnectionAddr::Tcp(host.clone(), *port).into_connection_info()?;
                let mut redis = info.redis_settings().clone().set_db(*db);
                if let Some(u) = username {
                    redis = redis.set_username(u);
                }
                if let Some(pw) = password {
                    redis = redis.set_password(pw.expose());
                }
                Ok(info.set_redis_settings(redis))
            }
        }
    }

    async fn connect(&self) -> Result<RedisClient, OutputError> {
        let info = self.connection_info().map_err(|e| {
            OutputError::permanent(
                ErrorCategory::ClientError,
                format!("invalid Redis settings: {e}"),
            )
        })?;
        let client = redis::Client::open(info).map_err(|e| redis_error("connect", &e))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(1);
        let conn = within(REDIS_TIMEOUT, "connecting to Redis", async {
            ConnectionManager::new_with_config(client, config)
                .await
                .map_err(|e| redis_error("connecting to Redis", &e))
        })
        .await?;
        Ok(RedisClient { conn })
    }
}

/// One multiplexed connection; cloning the manager is cheap and shares it.
pub(crate) struct RedisClient {
    conn: ConnectionManager,
}

impl std::fmt::Debug for RedisClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisClient").finish_non_exhaustive()
    }
}

impl RedisClient {
    /// Runs one command with the command timeout and the module's error mapping.
    pub(crate) async fn query<T: redis::FromRedisValue>(
        &self,
        what: &str,
        cmd: &redis::Cmd,
    ) -> Result<T, OutputError> {
        let mut conn = self.conn.clone();
        within(REDIS_TIMEOUT, what, async {
            cmd.query_async(&mut conn)
                .await
                .map_err(|e| redis_error(what, &e))
        })
        .await
    }
}

/// `modules.md` §3.7/§3.8: authentication errors (`NOAUTH`, `WRONGPASS`, `NOPERM`) are
/// `Unavailable`; a key of the wrong type needs an operator too; everything else (connection
/// refused or dropped, timeouts, `LOADING`, …) is `Transient`.
pub(crate) fn redis_error(what: &str, e: &RedisError) -> OutputError {
    let code = e.code().unwrap_or_default();
    let text = format!("{what}: {e}");
    if e.kind() == redis::ErrorKind::AuthenticationFailed
        || matches!(code, "NOAUTH" | "WRONGPASS" | "NOPERM")
    {
        return OutputError::unavailable(ErrorCategory::Auth, text);
    }
    if code == "WRONGTYPE" {
        return OutputError::unavailable(ErrorCategory::ClientError, text);
    }
    if e.is_timeout() {
        return OutputError::transient(ErrorCategory::Timeout, text);
    }
    if e.is_io_error() || e.is_connection_refusal() || e.is_connection_dropped() {
        return OutputError::transient(ErrorCategory::Connection, text);
    }
    OutputError::transient(ErrorCategory::ServerError, text)
}
