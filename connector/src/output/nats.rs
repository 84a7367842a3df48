//! `nats` (`docs/reference/module-contract.md` §3.18): publish to a NATS subject, or to JetStream with
//! `jetstream: true`, over one client per connection entry.
//!
//! - Headers `Webhook-Message-Id` and `Webhook-Id` are always set; with JetStream also
//!   `Nats-Msg-Id: <message_id>`, so the server drops a redelivery within its duplicate window.
//! - **Success:** core NATS after the publish and a completed flush; JetStream on the PubAck
//!   within 10 s.
//! - **Authentication:** `user`/`password`, `token`, `nkey_seed` (a user seed, checked at load)
//!   or `creds_file` (user JWT and seed, read and parsed at load); one of them.
//! - **Errors:** disconnection, timeouts and no responders are `Transient`; authorisation
//!   violations `Unavailable`; a payload over the server's `max_payload` `Permanent`.
//! - **Outbound policy** (`docs/reference/module-contract.md` §2.3): each client the connector creates first resolves
//!   every configured server (`url`, `servers`, as async-nats reads them) through
//!   [`admission::admit_each`]: one refused server refuses the connection; servers whose lookup
//!   fails are left out (none left: `Transient`), so only checked servers are handed to
//!   async-nats. async-nats then resolves the
//!   names again to connect. Its own reconnects after a lost connection, and the servers the
//!   cluster announces (`connect_urls`), are resolved by async-nats without the check.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::context::PublishErrorKind as JsPublishErrorKind;
use async_nats::{ConnectErrorKind, HeaderMap, ServerAddr};
use webhook_connect_protocol::config_values::Secret;

use super::admission;
use super::client_slot::ClientSlot;
use super::connection_keys;
use super::error_mapping::within;
use super::record::{self, BodyFormat};
use super::settings;
use super::shared::{SharedClients, client_key};
use super::{Delivery, ErrorCategory, ModuleSettings, Output, OutputError};
use crate::failure;
use crate::settings::Problems;

const NATS_TIMEOUT: Duration = Duration::from_secs(10);

/// Why `subject` is refused, if it is: dot-separated non-empty tokens, no wildcards or spaces.
fn check_subject(subject: &str) -> Option<&'static str> {
    if subject.is_empty() || subject.len() > 1024 {
        return Some("must be 1–1024 characters");
    }
    if subject.split('.').any(str::is_empty) {
        return Some("must be tokens separated by single dots");
    }
    if subject
        .chars()
        .any(|c| c == '*' || c == '>' || c.is_whitespace() || c.is_control())
    {
        return Some("must not contain *, > or whitespace");
    }
    None
}

/// Builds the module, recording configuration problems.
pub fn build(settings: &ModuleSettings<'_>, problems: &mut Problems) -> Option<Box<dyn Output>> {
    let before = problems.errors.len();
    let mut mc = settings.config_reader();
    let subject = mc.checked_string(problems, "subject", None, check_subject);
    let jetstream = mc.boolean(problems, "jetstream", false);
    let forward_headers = mc.boolean(problems, "forward_headers", false);
    let body = BodyFormat::read(&mut mc, problems, "body");
    mc.finish(problems, false);
    let server = NatsServer::read(settings, problems);
    let out: Box<dyn Output> = Box::new(Nats {
        subject: subject?,
        jetstream,
        forward_headers,
        body,
        server: server?,
        shared: settings.shared.clone(),
        client: ClientSlot::default(),
    });
    settings::unless_errors(problems, before, Some(out))
}

#[derive(Debug, Clone)]
struct NatsServer {
    key: String,
    servers: Vec<ServerAddr>,
    user: Option<(String, Secret)>,
    token: Option<Secret>,
    nkey_seed: Option<Secret>,
    /// The content of `creds_file` (user JWT and seed), read at load.
    creds: Option<Secret>,
    tls: bool,
    tls_ca_cert_file: Option<String>,
    name: String,
    /// `outbound_policy: strict`, applied to every address a server resolves to.
    strict: bool,
}

impl NatsServer {
    fn read(s: &ModuleSettings<'_>, p: &mut Problems) -> Option<Self> {
        let mut r = connection_keys::connection(s);
        let strict = s.outbound_strict;
        let mut urls = Vec::new();
        if let Some(u) = connection_keys::url(&mut r, p, "url", &["nats", "tls"], strict) {
            urls.push(u);
        }
        if let Some(list) = r.string_list(p, "servers") {
            for text in list {
                let mut one = serde_json::Map::new();
                one.insert("servers".into(), serde_json::Value::String(text));
                let mut item = crate::settings::Reader::detached(&one, r.path.clone());
                urls.extend(connection_keys::url(
                    &mut item,
                    p,
                    "servers",
                    &["nats", "tls"],
                    strict,
                ));
            }
        }
        if urls.is_empty() {
            urls.push(Secret::new("nats://127.0.0.1:4222"));
        }
        let mut servers = Vec::new();
        for u in &urls {
            match u.expose().parse::<ServerAddr>() {
                Ok(a) => servers.push(a),
                Err(_) => r.error(p, "url", "not a valid NATS server URL"),
            }
        }
        let user = r.string(p, "user");
        let password = connection_keys::secret(&mut r, p, "password");
        let token = connection_keys::secret(&mut r, p, "token");
        let nkey_seed = connection_keys::secret(&mut r, p, "nkey_seed");
        if let Some(seed) = &nkey_seed
            && !nkeys::KeyPair::from_seed(seed.expose())
                .is_ok_and(|k| k.public_key().starts_with('U'))
        {
            r.error(p, "nkey_seed", "not a user NKey seed (\"SU…\")");
        }
        let creds =
            r.string(p, "creds_file")
                .and_then(|path| match std::fs::read_to_string(&path) {
                    Ok(text) if async_nats::ConnectOptions::with_credentials(&text).is_ok() => {
                        Some(Secret::new(text))
                    }
                    Ok(_) => {
                        r.error(
                            p,
                            "creds_file",
                            format!("{path} is not a NATS credentials file"),
                        );
                        None
                    }
                    Err(e) => {
                        r.error(p, "creds_file", format!("cannot read {path}: {e}"));
                        None
                    }
                });
        let methods = [
            r.get("user").is_some(),
            r.get("token").is_some(),
            nkey_seed.is_some(),
            r.get("creds_file").is_some(),
        ];
        if methods.into_iter().filter(|m| *m).count() > 1 {
            r.error(
                p,
                "user",
                "choose one of user/password, token, nkey_seed and creds_file",
            );
        }
        let tls = r.boolean(p, "tls", false);
        let tls_ca_cert_file = r.string(p, "tls_ca_cert_file");
        let name = r
            .string(p, "name")
            .unwrap_or_else(|| "webhook-connector".to_owned());
        r.finish(p, false);
        let user = match (user, password) {
            (Some(u), pw) => Some((u, pw.unwrap_or_default())),
            (None, Some(_)) => {
                r.error(p, "password", "needs user");
                None
            }
            (None, None) => None,
        };
        let empty = serde_json::Map::new();
        Some(NatsServer {
            key: client_key(
                "nats",
                s.connection_name.unwrap_or("<default>"),
                s.connection.unwrap_or(&empty),
            ),
            servers,
            user,
            token,
            nkey_seed,
            creds,
            tls,
            tls_ca_cert_file,
            name,
            strict,
        })
    }

    /// The configured servers that pass the outbound policy ([`admission::admit_each`]).
    async fn admitted_servers(&self) -> Result<Vec<ServerAddr>, OutputError> {
        let endpoints: Vec<(&str, u16)> =
            self.servers.iter().map(|s| (s.host(), s.port())).collect();
        let admitted = admission::admit_each(&endpoints, self.strict, &[]).await?;
        Ok(admitted
            .into_iter()
            .filter_map(|i| self.servers.get(i).cloned())
            .collect())
    }

    async fn connect(&self) -> Result<async_nats::Client, OutputError> {
        let mut opts = async_nats::ConnectOptions::new()
            .name(&self.name)
            .connection_timeout(NATS_TIMEOUT)
            .request_timeout(Some(NATS_TIMEOUT))
            .require_tls(self.tls);
        if let Some((user, password)) = &self.user {
            opts = opts.user_and_password(user.clone(), password.expose().to_owned());
        }
        if let Some(token) = &self.token {
            opts = opts.token(token.expose().to_owned());
        }
        if let Some(seed) = &self.nkey_seed {
            opts = opts.nkey(seed.expose().to_owned());
        }
        if let Some(creds) = &self.creds {
            opts = opts.credentials(creds.expose()).map_err(|_| {
                OutputError::permanent(
                    ErrorCategory::ClientError,
                    "creds_file is not a NATS credentials file",
                )
            })?;
        }
        if let Some(ca) = &self.tls_ca_cert_file {
            opts = opts.add_root_certificates(ca.into());
        }
        // async-nats builds its rustls configuration with the process-wide provider.
        crate::tls::install_default_provider();
        within(NATS_TIMEOUT, "connecting to NATS", async {
            let servers = self.admitted_servers().await?;
            opts.connect(servers.as_slice()).await.map_err(|e| {
                let text = format!("connecting to NATS: {e}");
                if failure::is_tls_failure(&e) {
                    return OutputError::unavailable(ErrorCategory::Connection, text);
                }
                match e.kind() {
                    ConnectErrorKind::AuthorizationViolation | ConnectErrorKind::Authentication => {
                        OutputError::unavailable(ErrorCategory::Auth, text)
                    }
                    ConnectErrorKind::Tls => {
                        OutputError::unavailable(ErrorCategory::Connection, text)
                    }
                    ConnectErrorKind::TimedOut => {
                        OutputError::transient(ErrorCategory::Timeout, text)
                    }
                    _ => OutputError::transient(ErrorCategory::Connection, text),
                }
            })
        })
        .await
    }
}

struct Nats {
    subject: String,
    jetstream: bool,
    forward_headers: bool,
    body: BodyFormat,
    server: NatsServer,
    shared: Arc<SharedClients>,
    client: ClientSlot<async_nats::Client>,
}

impl std::fmt::Debug for Nats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nats")
            .field("subject", &self.subject)
            .field("jetstream", &self.jetstream)
            .finish_non_exhaustive()
    }
}

impl Nats {
    async fn client(&self) -> Result<Arc<async_nats::Client>, OutputError> {
        self.client
            .get_or(
                self.shared
                    .get_or_connect(&self.server.key, || self.server.connect()),
            )
            .await
    }

    fn headers(&self, d: &Delivery) -> HeaderMap {
        let mut h = HeaderMap::new();
        if self.forward_headers {
            for (k, v) in &d.headers {
                let printable = |s: &str| !s.is_empty() && !s.chars().any(char::is_control);
                if printable(k) && !k.contains(':') && !v.chars().any(char::is_control) {
                    h.insert(k.as_str(), v.as_str());
                }
            }
        }
        h.insert("Webhook-Message-Id", d.message_id.as_str());
        h.insert("Webhook-Id", d.webhook_id.as_str());
        if self.jetstream {
            h.insert("Nats-Msg-Id", d.message_id.as_str());
        }
        h
    }
}

fn transient(category: ErrorCategory, e: impl std::fmt::Display) -> OutputError {
    OutputError::transient(category, format!("NATS publish: {e}"))
}

#[async_trait::async_trait]
impl Output for Nats {
    async fn setup(&self) -> Result<(), OutputError> {
        self.client().await.map(|_| ())
    }

    async fn process(&self, delivery: &Delivery) -> Result<(), OutputError> {
        let client = self.client().await?;
        let body = record::encode(delivery, self.body)?.bytes;
        let max = client.server_info().max_payload;
        if max > 0 && body.len() > max {
            return Err(OutputError::permanent(
                ErrorCategory::InvalidData,
                format!(
                    "payload of {} bytes exceeds the server's max_payload {max}",
                    body.len()
                ),
            ));
        }
        let headers = self.headers(delivery);
        let subject = self.subject.clone();
        if self.jetstream {
            let js = async_nats::jetstream::new((*client).clone());
            within(NATS_TIMEOUT, "JetStream PubAck", async {
                let ack = js
                    .publish_with_headers(subject, headers, body.into())
                    .await
                    .map_err(|e| js_error(&e))?;
                ack.await.map(|_| ()).map_err(|e| js_error(&e))
            })
            .await
        } else {
            within(NATS_TIMEOUT, "NATS flush", async {
                client
                    .publish_with_headers(subject, headers, body.into())
                    .await
                    .map_err(|e| match e.kind() {
                        async_nats::client::PublishErrorKind::MaxPayloadExceeded => {
                            OutputError::permanent(
                                ErrorCategory::InvalidData,
                                format!("NATS publish: {e}"),
                            )
                        }
                        _ => transient(ErrorCategory::Connection, e),
                    })?;
                client
                    .flush()
                    .await
                    .map_err(|e| transient(ErrorCategory::Connection, e))
            })
            .await
        }
    }

    async fn teardown(&self) {
        self.client.release();
    }
}

fn js_error(e: &async_nats::jetstream::context::PublishError) -> OutputError {
    match e.kind() {
        JsPublishErrorKind::MaxPayloadExceeded => OutputError::permanent(
            ErrorCategory::InvalidData,
            format!("JetStream publish: {e}"),
        ),
        JsPublishErrorKind::TimedOut => transient(ErrorCategory::Timeout, e),
        JsPublishErrorKind::BrokenPipe => transient(ErrorCategory::Connection, e),
        // No stream answers for the subject ("no responders") and the rest: retry.
        _ => transient(ErrorCategory::ServerError, e),
    }
}

#[cfg(test)]
mod tests {
    use super::check_subject;

    #[test]
    fn subjects_are_checked() {
        assert_eq!(check_subject("webhooks.orders.created"), None);
        for bad in ["", "a..b", ".a", "a.*", "a.>", "a b"] {
            assert!(check_subject(bad).is_some(), "{bad}");
        }
    }
}
