//! The Redis server settings and client that `redis_publish` and `redis_rq` share
//! (`docs/reference/module-contract.md` §3.7, §3.8): one multiplexed, self-reconnecting connection per server, pooled
//! through [`SharedClients`](super::shared::SharedClients) so every instance naming the same
//! connection entry uses it. No `PING` before each command.
//!
//! TLS: `tls: true` (with `host`/`port`) or a `rediss://` url, over rustls; the system roots are
//! trusted unless `tls_ca_cert_file` names the CA, and `tls_cert_file` + `tls_key_file` present
//! a client certificate.
//!
//! Outbound policy (`docs/reference/module-contract.md` §2.3): each client the connector opens first resolves the host
//! (of the fields or of the url, as the redis crate reads it) through [`admission::admit`], then
//! hands the host name to the redis crate, which resolves it again to connect (the name is
//! kept so that TLS verifies the certificate against it, and so that every address of the name
//! is tried). The `ConnectionManager`'s own reconnects after a lost connection resolve the name
//! without the check; a client that fails is replaced through the check.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisError};
use serde_json::{Map, Value};
use webhook_connect_protocol::config_values::Secret;

use super::admission;
use super::connection_keys;
use super::error_mapping::within;
use super::shared::client_key;
use super::{ErrorCategory, ModuleSettings, OutputError};
use crate::failure;
use crate::settings::Problems;
use crate::settings::Reader;

/// Bound on connecting and on each command.
pub(crate) const REDIS_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and how to connect.
#[derive(Debug, Clone)]
pub(crate) struct RedisServer {
    key: String,
    target: Target,
    /// `tls: true` with `host`/`port` fields (a `rediss://` url says so itself).
    tls: bool,
    files: TlsFiles,
    /// `outbound_policy: strict`, applied to every address the host resolves to.
    strict: bool,
    /// Hosts exempt from the address rules (`allowed_hosts` of a webhook-level object).
    allowed: Vec<String>,
}

/// `tls_ca_cert_file` (PEM; replaces the system roots) and `tls_cert_file` + `tls_key_file`
/// (client certificate), read at load.
#[derive(Clone, Default)]
struct TlsFiles {
    ca: Option<Vec<u8>>,
    client: Option<(Vec<u8>, Secret)>,
}

impl std::fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsFiles")
            .field("ca", &self.ca.is_some())
            .field("client", &self.client.is_some())
            .finish()
    }
}

impl TlsFiles {
    /// Reads the files; with `tls` false their keys are ignored with a warning.
    fn read(r: &mut Reader<'_>, p: &mut Problems, tls: bool) -> Option<TlsFiles> {
        let ca = r.string(p, "tls_ca_cert_file");
        let cert = r.string(p, "tls_cert_file");
        let key = r.string(p, "tls_key_file");
        if !tls {
            for (name, set) in [
                ("tls_ca_cert_file", ca.is_some()),
                ("tls_cert_file", cert.is_some()),
                ("tls_key_file", key.is_some()),
            ] {
                if set {
                    r.warn(
                        p,
                        name,
                        "ignored without TLS (\"tls\": true or a rediss:// url)",
                    );
                }
            }
            return Some(TlsFiles::default());
        }
        let pair = connection_keys::client_cert_files(r, p, cert, key)?;
        let mut ok = true;
        let mut load = |name: &str, path: &str| -> Option<String> {
            match std::fs::read_to_string(path) {
                Ok(text) if text.contains("-----BEGIN ") => Some(text),
                Ok(_) => {
                    r.error(p, name, format!("no PEM data in {path}"));
                    ok = false;
                    None
                }
                Err(e) => {
                    r.error(p, name, format!("cannot read {path}: {e}"));
                    ok = false;
                    None
                }
            }
        };
        let ca = ca.and_then(|path| load("tls_ca_cert_file", &path));
        let client = match pair {
            Some((c, k)) => {
                let cert = load("tls_cert_file", &c);
                let key = load("tls_key_file", &k);
                cert.zip(key).map(|(c, k)| (c.into_bytes(), Secret::new(k)))
            }
            None => None,
        };
        ok.then(|| TlsFiles {
            ca: ca.map(String::into_bytes),
            client,
        })
    }

    fn is_empty(&self) -> bool {
        self.ca.is_none() && self.client.is_none()
    }
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
        let mut r = connection_keys::connection(s);
        let url = connection_keys::url(&mut r, p, "url", &["redis", "rediss"], s.outbound_strict);
        let fields = Self::fields(&mut r, p, s.outbound_strict, &[]);
        let tls = r.boolean(p, "tls", false);
        let url_tls = url
            .as_ref()
            .is_some_and(|u| u.expose().to_ascii_lowercase().starts_with("rediss:"));
        if tls && url.is_some() && !url_tls {
            r.error(
                p,
                "tls",
                "conflicts with a redis:// url; use a rediss:// url",
            );
        }
        let files = TlsFiles::read(&mut r, p, tls || url_tls);
        r.finish(p, false);
        let target = match url {
            Some(u) => Target::Url(u),
            None => fields?,
        };
        Some(RedisServer {
            key: client_key("redis", name, entry),
            // A rediss:// url says TLS itself.
            tls: tls && matches!(target, Target::Fields { .. }),
            target,
            files: files?,
            strict: s.outbound_strict,
            allowed: Vec::new(),
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
            tls: false,
            files: TlsFiles::default(),
            strict,
            allowed,
        })
    }

    fn fields(
        r: &mut Reader<'_>,
        p: &mut Problems,
        strict: bool,
        allowed: &[String],
    ) -> Option<Target> {
        let host = connection_keys::host(r, p, "host", Some("localhost"), strict, allowed);
        let port = connection_keys::port(r, p, "port", 6379);
        let db = r.integer_in(p, "db", 0, 0, 1 << 20);
        let username = r.string(p, "username");
        let password = connection_keys::secret(r, p, "password");
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
                let addr = if self.tls {
                    ConnectionAddr::TcpTls {
                        host: host.clone(),
                        port: *port,
                        insecure: false,
                        tls_params: None,
                    }
                } else {
                    ConnectionAddr::Tcp(host.clone(), *port)
                };
                let info = addr.into_connection_info()?;
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
        // Every connection error names the address it tried.
        let connecting = format!("connecting to Redis at {}", info.addr());
        // A Unix socket path has no host to check.
        if let ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } =
            info.addr()
        {
            within(
                REDIS_TIMEOUT,
                &format!("resolving the Redis host {host}"),
                async { admission::admit(host, *port, self.strict, &self.allowed).await },
            )
            .await?;
        }
        // redis builds its rustls configuration with the process-wide provider.
        crate::tls::install_default_provider();
        let client = if self.files.is_empty() {
            redis::Client::open(info)
        } else {
            redis::Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: self.files.client.as_ref().map(|(cert, key)| {
                        redis::ClientTlsConfig {
                            client_cert: cert.clone(),
                            client_key: key.expose().as_bytes().to_vec(),
                        }
                    }),
                    root_cert: self.files.ca.clone(),
                },
            )
        }
        .map_err(|e| redis_error(&connecting, &e))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(1);
        let conn = within(REDIS_TIMEOUT, &connecting, async {
            ConnectionManager::new_with_config(client, config)
                .await
                .map_err(|e| redis_error(&connecting, &e))
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

/// `docs/reference/module-contract.md` §3.7/§3.8: authentication errors (`NOAUTH`, `WRONGPASS`, `NOPERM`) and TLS
/// failures (certificate refused, handshake refused) are `Unavailable`; a key of the wrong type needs an operator too; everything else (connection
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
    if failure::is_tls_failure(e) {
        return OutputError::unavailable(ErrorCategory::Connection, format!("Redis TLS: {text}"));
    }
    if e.is_timeout() {
        return OutputError::transient(ErrorCategory::Timeout, text);
    }
    if e.is_io_error() || e.is_connection_refusal() || e.is_connection_dropped() {
        return OutputError::transient(ErrorCategory::Connection, text);
    }
    OutputError::transient(ErrorCategory::ServerError, text)
}
