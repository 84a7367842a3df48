//! `gcp_pubsub` (`docs/reference/module-contract.md` §3.11, feature `gcp_pubsub`): one REST `topics.publish` per
//! message through the connection's shared HTTP client.
//!
//! - **Message:** `data` is the base64 of the payload JSON; attributes are `webhook_id`,
//!   `message_id` and the headers whose names match `^[A-Za-z0-9_-]+$` (not starting with
//!   Pub/Sub's reserved `goog`, at most 256 bytes) and whose values are at most 1024 bytes, up to
//!   100 attributes in all. `ordering_key` takes the placeholders `{message_id}` and
//!   `{webhook_id}`.
//! - **Topic:** with `create_topic` (the default, as the original did) a missing topic is created
//!   with `PUT` at setup and again when a publish answers 404; without it a missing topic is
//!   `Unavailable`.
//! - **Endpoint:** conn `endpoint` overrides the API base URL; otherwise `PUBSUB_EMULATOR_HOST`
//!   (`host:port`, plain HTTP, no authentication, as Google's client libraries do); otherwise
//!   `https://pubsub.googleapis.com`.
//! - **Authentication:** conn `credentials_path`, a service-account JSON key, exchanged for an
//!   access token ([`gcp_auth`](super::gcp_auth)) cached per connection. Without it requests
//!   carry no token (emulators; anything else answers 401, which is `Unavailable`).
//! - **Time:** one `process` waits at most 10 s, token exchange and topic creation included.
//! - **Errors:** 429, 5xx, `UNAVAILABLE`, `DEADLINE_EXCEEDED` and network errors are
//!   `Transient`; 401, 403 and a missing topic `Unavailable`; `INVALID_ARGUMENT` and other 4xx
//!   `Permanent`.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use reqwest::Method;
use serde_json::{Map, Value, json};
use webhook_connect_protocol::config_values::Secret;

use super::client_slot::ClientSlot;
use super::connection_keys;
use super::error_mapping;
use super::gcp_auth::{self, ServiceAccount, TokenSource};
use super::settings;
use super::shared::{SharedClients, client_key};
use super::{Delivery, ErrorCategory, ModuleSettings, Output, OutputError};
use crate::outbound;
use crate::percent::percent_encode;
use crate::settings::Problems;

/// The longest a `process` (or `setup`) waits.
const TIMEOUT: Duration = Duration::from_secs(10);
/// The public API.
const DEFAULT_BASE: &str = "https://pubsub.googleapis.com";
/// Pub/Sub's limits on attributes.
const MAX_ATTRIBUTES: usize = 100;
const MAX_ATTRIBUTE_KEY: usize = 256;
const MAX_ATTRIBUTE_VALUE: usize = 1024;
/// Pub/Sub's limit on an ordering key.
const MAX_ORDERING_KEY: usize = 1024;
/// Longest error answer read.
const MAX_ANSWER: usize = 64 * 1024;

/// Why `topic` is not a valid topic id (`^[A-Za-z][A-Za-z0-9._~+%-]{2,254}$`, and not
/// `goog…`, which Pub/Sub reserves), if it is not.
pub fn topic_problem(topic: &str) -> Option<&'static str> {
    let mut chars = topic.chars();
    if !(3..=255).contains(&topic.len()) {
        return Some("must be 3–255 characters");
    }
    if !chars.next().is_some_and(|c| c.is_ascii_alphabetic()) {
        return Some("must start with a letter");
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || "._~+%-".contains(c)) {
        return Some("may hold only letters, digits and . _ ~ + % -");
    }
    if topic.to_ascii_lowercase().starts_with("goog") {
        return Some("must not start with \"goog\" (reserved by Pub/Sub)");
    }
    None
}

/// Why `project` is not a valid project id (`^[a-z][a-z0-9-]{4,28}[a-z0-9]$`), if it is not.
pub fn project_problem(project: &str) -> Option<&'static str> {
    let bytes = project.as_bytes();
    if !(6..=30).contains(&bytes.len()) {
        return Some("must be 6–30 characters");
    }
    let ok = bytes[0].is_ascii_lowercase()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[bytes.len() - 1] != b'-';
    if ok {
        None
    } else {
        Some("must be lower-case letters, digits and '-', start with a letter, not end with '-'")
    }
}

/// The connection keys, as read at load.
#[derive(Debug, Clone)]
struct Connection {
    key: String,
    /// API base URL ending in `/v1`.
    base: String,
    project_id: String,
    account: Option<ServiceAccount>,
    /// `outbound_policy: strict`, applied to every address the endpoints resolve to.
    strict: bool,
}

impl Connection {
    fn read(s: &ModuleSettings<'_>, p: &mut Problems) -> Option<Self> {
        let mut r = connection_keys::connection(s);
        let project_id = r.checked_string(p, "project_id", None, project_problem);
        let endpoint =
            connection_keys::url(&mut r, p, "endpoint", &["http", "https"], s.outbound_strict);
        let emulator = std::env::var("PUBSUB_EMULATOR_HOST").ok();
        let (base, using_emulator) = match base_url(endpoint.as_ref(), emulator.as_deref()) {
            Ok(Base::Endpoint(b)) => (Some(b), false),
            Ok(Base::Emulator(b)) => match outbound::check(&b, s.outbound_strict) {
                Some(why) => {
                    r.error(p, "endpoint", format!("PUBSUB_EMULATOR_HOST {b}: {why}"));
                    (None, true)
                }
                None => (Some(b), true),
            },
            Err(why) => {
                r.error(p, "endpoint", why);
                (None, false)
            }
        };
        let account = match r.string(p, "credentials_path") {
            // The emulator takes no credentials; Google's libraries ignore them there too.
            Some(_) if using_emulator => None,
            Some(path) => match read_account(&path, s.outbound_strict) {
                Ok(a) => Some(a),
                Err(why) => {
                    r.error(p, "credentials_path", why);
                    None
                }
            },
            None => None,
        };
        r.finish(p, false);
        let empty = Map::new();
        Some(Connection {
            key: client_key(
                "gcp_pubsub",
                s.connection_name.unwrap_or("<default>"),
                s.connection.unwrap_or(&empty),
            ),
            base: base?,
            project_id: project_id?,
            account,
            strict: s.outbound_strict,
        })
    }

    async fn client(&self, shared: &Arc<SharedClients>) -> Result<Arc<PubsubClient>, OutputError> {
        shared
            .get_or_connect(&self.key, || async {
                let http = reqwest::Client::builder()
                    .connect_timeout(TIMEOUT)
                    .timeout(TIMEOUT)
                    .redirect(reqwest::redirect::Policy::none())
                    .dns_resolver(outbound::PolicyResolver::new(self.strict, &[]))
                    .build()
                    .map_err(|e| {
                        OutputError::unavailable(
                            ErrorCategory::Other,
                            format!("building the Pub/Sub HTTP client: {e}"),
                        )
                    })?;
                Ok(PubsubClient {
                    http,
                    tokens: self
                        .account
                        .clone()
                        .map(|a| TokenSource::new(a, gcp_auth::PUBSUB_SCOPE)),
                })
            })
            .await
    }
}

/// Where requests go.
#[derive(Debug, PartialEq, Eq)]
enum Base {
    /// conn `endpoint`, or the public API.
    Endpoint(String),
    /// `PUBSUB_EMULATOR_HOST`: plain HTTP, no authentication.
    Emulator(String),
}

/// The API base URL (ending in `/v1`): conn `endpoint` first, then `PUBSUB_EMULATOR_HOST`
/// (`host:port`), then the public API.
fn base_url(endpoint: Option<&Secret>, emulator_host: Option<&str>) -> Result<Base, String> {
    if let Some(url) = endpoint {
        let text = url.expose();
        if text.contains('@') || text.contains(['?', '#']) {
            return Err("must be a base URL without user-info or query".into());
        }
        return Ok(Base::Endpoint(api_base(text)));
    }
    match emulator_host.map(str::trim).filter(|h| !h.is_empty()) {
        Some(host) if host.contains("://") => Ok(Base::Emulator(api_base(host))),
        Some(host) => Ok(Base::Emulator(api_base(&format!("http://{host}")))),
        None => Ok(Base::Endpoint(api_base(DEFAULT_BASE))),
    }
}

/// `<url>/v1`, unless the URL already ends in `/v1`.
fn api_base(url: &str) -> String {
    let trimmed = url.trim_end_matches('/');
    if trimmed.ends_with("/v1") {
        trimmed.to_owned()
    } else {
        format!("{trimmed}/v1")
    }
}

/// Reads and parses the key file at `path`; its `token_uri` passes the outbound policy.
fn read_account(path: &str, strict: bool) -> Result<ServiceAccount, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path:?}: {e}"))?;
    let account = ServiceAccount::parse(&text).map_err(|e| format!("{path:?}: {e}"))?;
    if let Some(why) = outbound::check(&account.token_uri, strict) {
        return Err(format!("{path:?}: token_uri {}: {why}", account.token_uri));
    }
    Ok(account)
}

/// One HTTP client per connection, with its token cache.
#[derive(Debug)]
pub struct PubsubClient {
    http: reqwest::Client,
    tokens: Option<TokenSource>,
}

/// An answer of the API.
#[derive(Debug)]
struct Answer {
    status: u16,
    body: Value,
    retry_after: Option<Duration>,
}

impl PubsubClient {
    async fn call(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<Answer, OutputError> {
        let mut req = self.http.request(method, url);
        if let Some(tokens) = &self.tokens {
            let token = tokens.token(&self.http).await?;
            req = req.bearer_auth(token.expose());
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let what = "Pub/Sub request";
        let response = req
            .send()
            .await
            .map_err(|e| error_mapping::http_error(what, &e))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = response
            .bytes()
            .await
            .map_err(|e| error_mapping::http_error(what, &e))?;
        let body =
            serde_json::from_slice(&bytes[..bytes.len().min(MAX_ANSWER)]).unwrap_or(Value::Null);
        if status == 401
            && let Some(tokens) = &self.tokens
        {
            // A revoked or rotated token: fetch a new one next time.
            tokens.invalidate().await;
        }
        Ok(Answer {
            status,
            body,
            retry_after,
        })
    }
}

/// Classifies a failed answer (`docs/reference/module-contract.md` §3.11 error table).
fn classify(what: &str, answer: &Answer) -> OutputError {
    let error = answer.body.get("error");
    let code = error
        .and_then(|e| e.get("status"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let message = error
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let status = answer.status;
    let text = format!("{what}: HTTP {status} {code} {message}")
        .trim_end()
        .to_owned();
    let err = match (status, code) {
        (429, _) | (_, "RESOURCE_EXHAUSTED") => {
            OutputError::transient(ErrorCategory::RateLimited, text)
        }
        (_, "DEADLINE_EXCEEDED") | (408, _) | (504, _) => {
            OutputError::transient(ErrorCategory::Timeout, text)
        }
        (_, "UNAVAILABLE" | "INTERNAL" | "ABORTED" | "UNKNOWN") => {
            OutputError::transient(ErrorCategory::ServerError, text)
        }
        (s, _) if s >= 500 => OutputError::transient(ErrorCategory::ServerError, text),
        (401 | 403, _) | (_, "UNAUTHENTICATED" | "PERMISSION_DENIED") => {
            OutputError::unavailable(ErrorCategory::Auth, text)
        }
        (404, _) | (_, "NOT_FOUND") => OutputError::unavailable(ErrorCategory::ClientError, text),
        (_, "INVALID_ARGUMENT") | (413, _) => {
            OutputError::permanent(ErrorCategory::InvalidData, text)
        }
        _ => OutputError::permanent(ErrorCategory::ClientError, text),
    };
    match answer.retry_after {
        Some(d) if err.kind == super::ErrorKind::Transient => err.with_retry_after(d),
        _ => err,
    }
}

/// Builds the module, recording configuration problems.
pub fn build(settings: &ModuleSettings<'_>, problems: &mut Problems) -> Option<Box<dyn Output>> {
    let before = problems.errors.len();
    let mut mc = settings.config_reader();
    let fallback = settings
        .fallback("topic")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let topic = mc.checked_string(problems, "topic", fallback, topic_problem);
    let create_topic = mc.boolean(problems, "create_topic", true);
    let ordering_key = mc.string(problems, "ordering_key");
    if let Some(k) = &ordering_key
        && (k.is_empty() || k.len() > MAX_ORDERING_KEY)
    {
        mc.error(
            problems,
            "ordering_key",
            format!("must be 1–{MAX_ORDERING_KEY} bytes"),
        );
    }
    mc.finish(problems, false);
    let conn = Connection::read(settings, problems);
    let out: Box<dyn Output> = Box::new(PubSub {
        topic: topic?,
        create_topic,
        ordering_key,
        conn: conn?,
        shared: settings.shared.clone(),
        client: ClientSlot::default(),
    });
    settings::unless_errors(problems, before, Some(out))
}

struct PubSub {
    topic: String,
    create_topic: bool,
    ordering_key: Option<String>,
    conn: Connection,
    shared: Arc<SharedClients>,
    client: ClientSlot<PubsubClient>,
}

impl std::fmt::Debug for PubSub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PubSub")
            .field("project_id", &self.conn.project_id)
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

/// The attributes of `d`: `webhook_id`, `message_id`, then the headers Pub/Sub accepts, at
/// most [`MAX_ATTRIBUTES`] in all.
pub fn attributes(d: &Delivery) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("webhook_id".into(), Value::from(d.webhook_id.as_str()));
    out.insert("message_id".into(), Value::from(d.message_id.as_str()));
    for (name, value) in &d.headers {
        if out.len() >= MAX_ATTRIBUTES {
            break;
        }
        let name_ok = !name.is_empty()
            && name.len() <= MAX_ATTRIBUTE_KEY
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            && !name.to_ascii_lowercase().starts_with("goog")
            && !out.contains_key(name);
        if name_ok && value.len() <= MAX_ATTRIBUTE_VALUE {
            out.insert(name.clone(), Value::from(value.as_str()));
        }
    }
    out
}

impl PubSub {
    async fn client(&self) -> Result<Arc<PubsubClient>, OutputError> {
        self.client.get_or(self.conn.client(&self.shared)).await
    }

    fn topic_url(&self) -> String {
        format!(
            "{}/projects/{}/topics/{}",
            self.conn.base,
            self.conn.project_id,
            percent_encode(&self.topic)
        )
    }

    /// `PUT` of the topic; an existing topic (409) is fine.
    async fn ensure_topic(&self, client: &PubsubClient) -> Result<(), OutputError> {
        let answer = client
            .call(Method::PUT, &self.topic_url(), Some(&json!({})))
            .await?;
        if (200..300).contains(&answer.status) || answer.status == 409 {
            Ok(())
        } else {
            Err(classify(&format!("creating topic {}", self.topic), &answer))
        }
    }

    fn message(&self, d: &Delivery) -> Value {
        let data = base64::engine::general_purpose::STANDARD.encode(d.payload_json());
        let mut message = json!({"data": data, "attributes": attributes(d)});
        if let Some(pattern) = &self.ordering_key {
            let key = pattern
                .replace("{message_id}", &d.message_id)
                .replace("{webhook_id}", &d.webhook_id);
            if !key.is_empty() {
                message["orderingKey"] = Value::from(key);
            }
        }
        json!({"messages": [message]})
    }

    async fn publish(&self, d: &Delivery) -> Result<(), OutputError> {
        let client = self.client().await?;
        let body = self.message(d);
        let url = format!("{}:publish", self.topic_url());
        let mut answer = client.call(Method::POST, &url, Some(&body)).await?;
        if answer.status == 404 && self.create_topic {
            self.ensure_topic(&client).await?;
            answer = client.call(Method::POST, &url, Some(&body)).await?;
        }
        if !(200..300).contains(&answer.status) {
            return Err(classify(&format!("publishing to {}", self.topic), &answer));
        }
        match answer.body.get("messageIds").and_then(Value::as_array) {
            Some(ids) if !ids.is_empty() => Ok(()),
            _ => Err(OutputError::transient(
                ErrorCategory::ServerError,
                format!("publishing to {}: the answer has no messageIds", self.topic),
            )),
        }
    }
}

#[async_trait::async_trait]
impl Output for PubSub {
    async fn setup(&self) -> Result<(), OutputError> {
        error_mapping::within(TIMEOUT, "Pub/Sub setup", async {
            let client = self.client().await?;
            if self.create_topic {
                return self.ensure_topic(&client).await;
            }
            let answer = client.call(Method::GET, &self.topic_url(), None).await?;
            if (200..300).contains(&answer.status) {
                Ok(())
            } else {
                Err(classify(&format!("topic {}", self.topic), &answer))
            }
        })
        .await
    }

    async fn process(&self, delivery: &Delivery) -> Result<(), OutputError> {
        error_mapping::within(TIMEOUT, "Pub/Sub publish", self.publish(delivery)).await
    }

    async fn teardown(&self) {
        self.client.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::ErrorKind;

    #[test]
    fn topic_and_project_ids_follow_the_spec_patterns() {
        for ok in ["orders", "a.b_c~d+e%f-g", &format!("t{}", "x".repeat(254))] {
            assert_eq!(topic_problem(ok), None, "{ok}");
        }
        for bad in [
            "ab",
            "1abc",
            "has space",
            "goog-topic",
            &"t".repeat(256),
            "a/b",
        ] {
            assert!(topic_problem(bad).is_some(), "{bad}");
        }
        for ok in ["my-project", "abcdef", &format!("a{}", "b".repeat(29))] {
            assert_eq!(project_problem(ok), None, "{ok}");
        }
        for bad in [
            "abcde",
            "My-project",
            "1project",
            "project-",
            &"a".repeat(31),
        ] {
            assert!(project_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn the_base_url_gets_v1_once() {
        assert_eq!(
            api_base("http://127.0.0.1:8085"),
            "http://127.0.0.1:8085/v1"
        );
        assert_eq!(api_base("http://h:1/v1/"), "http://h:1/v1");
        assert_eq!(api_base(DEFAULT_BASE), "https://pubsub.googleapis.com/v1");
    }

    #[test]
    fn endpoint_wins_over_the_emulator_variable_which_wins_over_google() {
        let endpoint = Secret::new("https://pubsub.example.test/");
        assert_eq!(
            base_url(Some(&endpoint), Some("127.0.0.1:8085")),
            Ok(Base::Endpoint("https://pubsub.example.test/v1".into()))
        );
        assert_eq!(
            base_url(None, Some("127.0.0.1:8085")),
            Ok(Base::Emulator("http://127.0.0.1:8085/v1".into()))
        );
        assert_eq!(
            base_url(None, Some("  ")),
            Ok(Base::Endpoint("https://pubsub.googleapis.com/v1".into()))
        );
        assert!(base_url(Some(&Secret::new("http://u:p@h/")), None).is_err());
    }

    fn answer(status: u16, code: &str) -> Answer {
        Answer {
            status,
            body: json!({"error": {"code": status, "status": code, "message": "m"}}),
            retry_after: Some(Duration::from_secs(3)),
        }
    }

    #[test]
    fn answers_map_to_the_spec_kinds() {
        let kind = |s, c| classify("x", &answer(s, c)).kind;
        assert_eq!(kind(429, "RESOURCE_EXHAUSTED"), ErrorKind::Transient);
        assert_eq!(kind(503, "UNAVAILABLE"), ErrorKind::Transient);
        assert_eq!(kind(504, "DEADLINE_EXCEEDED"), ErrorKind::Transient);
        assert_eq!(kind(500, ""), ErrorKind::Transient);
        assert_eq!(kind(401, "UNAUTHENTICATED"), ErrorKind::Unavailable);
        assert_eq!(kind(403, "PERMISSION_DENIED"), ErrorKind::Unavailable);
        assert_eq!(kind(404, "NOT_FOUND"), ErrorKind::Unavailable);
        assert_eq!(kind(400, "INVALID_ARGUMENT"), ErrorKind::Permanent);
        assert_eq!(
            classify("x", &answer(429, "")).retry_after,
            Some(Duration::from_secs(3))
        );
        assert_eq!(classify("x", &answer(403, "")).retry_after, None);
    }
}
