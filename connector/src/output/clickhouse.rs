//! `clickhouse` (`docs/reference/module-contract.md` §3.12, feature `clickhouse`, R-92): one row per message in a
//! ClickHouse table, over ClickHouse's **HTTP** interface with the connector's HTTP client
//! (`reqwest`), one client per connection entry.
//!
//! - **Connection:** `host` (required), `port` (8123; the native-protocol ports 9000 and 9440
//!   are load errors with the hint to use the HTTP port), `database` / `user` / `password`
//!   (`default`, `default`, `""`; sent as `X-ClickHouse-User` / `X-ClickHouse-Key`, or as
//!   HTTP basic auth when a value cannot be a header), `secure` (HTTPS; its default port is
//!   then 8443, ClickHouse's HTTPS port).
//! - **Setup** runs the specification's `CREATE TABLE IF NOT EXISTS` with one addition: the
//!   table setting `non_replicated_deduplication_window`, without which a plain `MergeTree`
//!   ignores `insert_deduplication_token` and a redelivery would insert a second row (see
//!   [`DEDUP_WINDOW`]).
//! - **Insert:** `INSERT INTO <table> FORMAT JSONEachRow` with one row in the body, `id =
//!   UUIDv5(message_id)` and the query setting `insert_deduplication_token = message_id`.
//!   `Ok` only on a 2xx answer without an exception (errors propagate; the original printed
//!   them and acked).
//! - **Errors** (the `X-ClickHouse-Exception-Code` header, else `Code: N` in the body, else the
//!   HTTP status): authentication and permission (516, 192–194, 497, 164 `READONLY`, HTTP
//!   401/403), an unknown database (81) and a table dropped after setup (60) are
//!   `Unavailable`; 5xx, 408/159 and network failures `Transient`; other 4xx (a value that
//!   does not fit its column, a syntax error) `Permanent`.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{Value, json};
use webhook_connect_protocol::config_values::Secret;

use super::client_slot::ClientSlot;
use super::connection_keys;
use super::error_mapping;
use super::identifier::is_identifier;
use super::settings;
use super::shared::{SharedClients, client_key};
use super::{Delivery, ErrorCategory, ModuleSettings, Output, OutputError, record};
use crate::outbound::PolicyResolver;
use crate::settings::Problems;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Inserts (one per message) whose deduplication tokens a table remembers. ClickHouse keeps
/// the hashes of the last N inserted blocks per table; `MergeTree` defaults to 0 (no
/// deduplication at all) and `ReplicatedMergeTree` to 1000. 10 000 covers a redelivery long
/// after the first attempt at a high message rate, at the cost of a small hash file.
pub const DEDUP_WINDOW: u32 = 10_000;

/// Why `port` must not be used, if it must not.
fn port_problem(port: u16) -> Option<&'static str> {
    match port {
        9000 => Some(
            "9000 is ClickHouse's native protocol port; this module speaks the HTTP interface: \
             use the HTTP port, usually 8123",
        ),
        9440 => Some(
            "9440 is ClickHouse's secure native protocol port; this module speaks the HTTP \
             interface: use the HTTP port, usually 8123 (8443 with secure)",
        ),
        _ => None,
    }
}

/// Builds the module, recording configuration problems.
pub fn build(settings: &ModuleSettings<'_>, problems: &mut Problems) -> Option<Box<dyn Output>> {
    let before = problems.errors.len();
    let mut mc = settings.config_reader();
    let table = mc
        .string(problems, "table")
        .unwrap_or_else(|| "webhook_logs".to_owned());
    if !is_identifier(&table) {
        mc.error(
            problems,
            "table",
            format!("must be an identifier ([A-Za-z_][A-Za-z0-9_]{{0,62}}); got {table:?}"),
        );
    }
    let include_headers = mc.boolean(problems, "include_headers", true);
    let include_timestamp = mc.boolean(problems, "include_timestamp", true);
    mc.finish(problems, false);

    connection_keys::require_connection(settings, problems);
    let mut r = connection_keys::connection(settings);
    let host = connection_keys::host(
        &mut r,
        problems,
        "host",
        None,
        settings.outbound_strict,
        &[],
    );
    let secure = r.boolean(problems, "secure", false);
    let port = connection_keys::port(&mut r, problems, "port", if secure { 8443 } else { 8123 });
    if let Some(why) = port_problem(port) {
        r.error(problems, "port", why);
    }
    let database = r
        .string(problems, "database")
        .unwrap_or_else(|| "default".to_owned());
    if database.is_empty() {
        r.error(problems, "database", "must not be empty");
    }
    let user = r
        .string(problems, "user")
        .unwrap_or_else(|| "default".to_owned());
    let password = connection_keys::secret(&mut r, problems, "password").unwrap_or_default();
    r.finish(problems, false);

    let host = host?;
    let literal = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host
    };
    let scheme = if secure { "https" } else { "http" };
    let base = match reqwest::Url::parse(&format!("{scheme}://{literal}:{port}/")) {
        Ok(u) => u,
        Err(e) => {
            r.error(problems, "host", format!("not a usable host: {e}"));
            return None;
        }
    };
    let empty = serde_json::Map::new();
    let out: Box<dyn Output> = Box::new(ClickHouse {
        table,
        include_headers,
        include_timestamp,
        conn: Connection {
            key: client_key(
                "clickhouse",
                settings.connection_name.unwrap_or("<default>"),
                settings.connection.unwrap_or(&empty),
            ),
            base,
            database,
            user,
            password,
            strict: settings.outbound_strict,
        },
        shared: settings.shared.clone(),
        client: ClientSlot::default(),
    });
    settings::unless_errors(problems, before, Some(out))
}

/// Where and as whom the module talks to ClickHouse.
#[derive(Debug, Clone)]
struct Connection {
    /// The shared-client key (connection name plus a hash of its settings).
    key: String,
    /// `http(s)://host:port/`.
    base: reqwest::Url,
    database: String,
    user: String,
    password: Secret,
    /// `outbound_policy: strict`, applied to every address the host resolves to.
    strict: bool,
}

impl Connection {
    /// The credential headers: `X-ClickHouse-User` / `X-ClickHouse-Key`, or HTTP basic auth
    /// when either value is not a valid header value (non-ASCII, control characters).
    fn auth_headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        match (
            HeaderValue::from_str(&self.user),
            HeaderValue::from_str(self.password.expose()),
        ) {
            (Ok(user), Ok(mut key)) => {
                key.set_sensitive(true);
                headers.insert("x-clickhouse-user", user);
                headers.insert("x-clickhouse-key", key);
            }
            _ => {
                use base64::Engine as _;
                let token = base64::engine::general_purpose::STANDARD.encode(format!(
                    "{}:{}",
                    self.user,
                    self.password.expose()
                ));
                if let Ok(mut v) = HeaderValue::from_str(&format!("Basic {token}")) {
                    v.set_sensitive(true);
                    headers.insert(reqwest::header::AUTHORIZATION, v);
                }
            }
        }
        headers
    }

    /// The client shared by every instance on this connection entry.
    async fn client(&self, shared: &Arc<SharedClients>) -> Result<Arc<Client>, OutputError> {
        shared
            .get_or_connect(&self.key, || async {
                let http = reqwest::Client::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .timeout(REQUEST_TIMEOUT)
                    .redirect(reqwest::redirect::Policy::none())
                    .dns_resolver(PolicyResolver::new(self.strict, &[]))
                    .default_headers(self.auth_headers())
                    .build()
                    .map_err(|e| {
                        OutputError::unavailable(
                            ErrorCategory::Other,
                            format!("building the ClickHouse HTTP client: {e}"),
                        )
                    })?;
                Ok(Client {
                    http,
                    base: self.base.clone(),
                    database: self.database.clone(),
                })
            })
            .await
    }
}

/// One HTTP client for one ClickHouse endpoint and database.
#[derive(Debug)]
struct Client {
    http: reqwest::Client,
    base: reqwest::Url,
    database: String,
}

impl Client {
    /// Runs `query` (URL parameter; `None`: the statement is the body) with `settings` as
    /// URL parameters and `body` as the request body. `Ok` only on a 2xx answer that carries
    /// no exception.
    async fn run(
        &self,
        what: &str,
        query: Option<&str>,
        settings: &[(&str, &str)],
        body: String,
    ) -> Result<(), OutputError> {
        let mut url = self.base.clone();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("database", &self.database);
            if let Some(query) = query {
                q.append_pair("query", query);
            }
            for (k, v) in settings {
                q.append_pair(k, v);
            }
        }
        let response = self
            .http
            .post(url)
            .body(body)
            .send()
            .await
            .map_err(|e| error_mapping::http_error(what, &e))?;
        let status = response.status().as_u16();
        let header_code = response
            .headers()
            .get("x-clickhouse-exception-code")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u32>().ok());
        let text = response
            .text()
            .await
            .map_err(|e| error_mapping::http_error(what, &e))?;
        if (200..300).contains(&status) && header_code.is_none() {
            return Ok(());
        }
        Err(classify(
            what,
            status,
            header_code.or_else(|| code_of(&text)),
            &text,
        ))
    }
}

/// The `N` of `Code: N.` in a ClickHouse error body.
pub fn code_of(body: &str) -> Option<u32> {
    let rest = &body[body.find("Code:")? + 5..];
    let digits: String = rest
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// The error of a failed request (`docs/reference/module-contract.md` §3.12): `code` is ClickHouse's exception code
/// when it sent one.
pub fn classify(what: &str, status: u16, code: Option<u32>, body: &str) -> OutputError {
    /// 192 UNKNOWN_USER, 193 WRONG_PASSWORD, 194 REQUIRED_PASSWORD, 497 ACCESS_DENIED,
    /// 516 AUTHENTICATION_FAILED, 164 READONLY (a read-only user), 512 SET_NON_GRANTED_ROLE.
    const AUTH: &[u32] = &[164, 192, 193, 194, 497, 512, 516];
    /// 81 UNKNOWN_DATABASE, 60 UNKNOWN_TABLE (dropped after setup).
    const MISSING: &[u32] = &[60, 81];
    /// 159 TIMEOUT_EXCEEDED, 209 SOCKET_TIMEOUT.
    const TIMEOUT: &[u32] = &[159, 209];
    /// 202 TOO_MANY_SIMULTANEOUS_QUERIES, 252 TOO_MANY_PARTS, 241 MEMORY_LIMIT_EXCEEDED.
    const BUSY: &[u32] = &[202, 241, 252];
    let detail: String = body.trim().chars().take(500).collect();
    let text = match code {
        Some(c) => format!("{what}: HTTP {status}, ClickHouse code {c}: {detail}"),
        None => format!("{what}: HTTP {status}: {detail}"),
    };
    let has = |list: &[u32]| code.is_some_and(|c| list.contains(&c));
    if has(AUTH) || (code.is_none() && matches!(status, 401 | 403)) {
        OutputError::unavailable(ErrorCategory::Auth, text)
    } else if has(MISSING) {
        OutputError::unavailable(ErrorCategory::ClientError, text)
    } else if has(TIMEOUT) || status == 408 {
        OutputError::transient(ErrorCategory::Timeout, text)
    } else if has(BUSY) || status == 429 || status == 503 {
        OutputError::transient(ErrorCategory::RateLimited, text)
    } else if !(400..500).contains(&status) {
        // 5xx, and a 2xx that carried an exception (the query failed after the answer began).
        OutputError::transient(ErrorCategory::ServerError, text)
    } else if status == 400 {
        OutputError::permanent(ErrorCategory::InvalidData, text)
    } else {
        OutputError::permanent(ErrorCategory::ClientError, text)
    }
}

struct ClickHouse {
    table: String,
    include_headers: bool,
    include_timestamp: bool,
    conn: Connection,
    shared: Arc<SharedClients>,
    client: ClientSlot<Client>,
}

impl std::fmt::Debug for ClickHouse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouse")
            .field("table", &self.table)
            .field("base", &self.conn.base.as_str())
            .field("database", &self.conn.database)
            .finish_non_exhaustive()
    }
}

/// `CREATE TABLE IF NOT EXISTS` of §3.12 for `table` (a validated identifier), plus the
/// deduplication window ([`DEDUP_WINDOW`]).
pub fn create_sql(table: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS `{table}` (\
         id UUID, \
         webhook_id String, \
         timestamp DateTime64(6, 'UTC'), \
         payload String, \
         headers String, \
         created_at DateTime DEFAULT now()\
         ) ENGINE = MergeTree \
         PARTITION BY toYYYYMM(timestamp) \
         ORDER BY (webhook_id, timestamp) \
         SETTINGS non_replicated_deduplication_window = {DEDUP_WINDOW}"
    )
}

/// `INSERT INTO <table> FORMAT JSONEachRow`: the row travels in the body.
pub fn insert_sql(table: &str) -> String {
    format!("INSERT INTO `{table}` FORMAT JSONEachRow")
}

/// `YYYY-MM-DD hh:mm:ss.ffffff` in UTC: what a `DateTime64(6, 'UTC')` column reads under the
/// server's default `date_time_input_format = basic` (which refuses RFC 3339's `T` and `Z`).
fn clickhouse_time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S%.6f").to_string()
}

impl ClickHouse {
    async fn client(&self) -> Result<Arc<Client>, OutputError> {
        self.client.get_or(self.conn.client(&self.shared)).await
    }

    /// The JSONEachRow line of `d`. Without `include_timestamp` the time is now; without
    /// `include_headers` the column holds an empty string (it is not `Nullable`).
    fn row(&self, d: &Delivery) -> String {
        let at = if self.include_timestamp {
            DateTime::parse_from_rfc3339(&record::received_at(d))
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or_else(|_| Utc::now())
        } else {
            Utc::now()
        };
        let headers = if self.include_headers {
            record::headers_json(d).to_string()
        } else {
            String::new()
        };
        let row: Value = json!({
            "id": record::message_uuid(&d.message_id).to_string(),
            "webhook_id": d.webhook_id,
            "timestamp": clickhouse_time(at),
            "payload": d.payload_json(),
            "headers": headers,
        });
        let mut line = row.to_string();
        line.push('\n');
        line
    }
}

#[async_trait::async_trait]
impl Output for ClickHouse {
    async fn setup(&self) -> Result<(), OutputError> {
        let client = self.client().await?;
        client
            .run(
                &format!("creating table {}", self.table),
                None,
                &[],
                create_sql(&self.table),
            )
            .await
    }

    async fn process(&self, delivery: &Delivery) -> Result<(), OutputError> {
        let client = self.client().await?;
        client
            .run(
                &format!("insert into {}", self.table),
                Some(&insert_sql(&self.table)),
                &[("insert_deduplication_token", &delivery.message_id)],
                self.row(delivery),
            )
            .await
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
    fn the_code_is_read_from_the_body() {
        assert_eq!(
            code_of("Code: 516. DB::Exception: default: Authentication failed"),
            Some(516)
        );
        assert_eq!(
            code_of("Code: 60, e.displayText() = DB::Exception: x"),
            Some(60)
        );
        assert_eq!(code_of("Bad Gateway"), None);
    }

    #[test]
    fn errors_are_classified_as_the_specification_says() {
        let kind = |status, code| classify("t", status, code, "").kind;
        assert_eq!(kind(403, Some(516)), ErrorKind::Unavailable);
        assert_eq!(kind(401, None), ErrorKind::Unavailable);
        assert_eq!(kind(404, Some(81)), ErrorKind::Unavailable);
        assert_eq!(kind(500, None), ErrorKind::Transient);
        assert_eq!(kind(502, None), ErrorKind::Transient);
        assert_eq!(kind(408, Some(159)), ErrorKind::Transient);
        assert_eq!(kind(400, Some(27)), ErrorKind::Permanent);
        assert_eq!(kind(404, Some(115)), ErrorKind::Permanent);
        assert_eq!(kind(500, Some(252)), ErrorKind::Transient);
    }

    #[test]
    fn timestamps_use_the_basic_input_format() {
        let at = DateTime::parse_from_rfc3339("2026-01-02T05:04:05.123456+02:00")
            .unwrap_or_else(|e| panic!("{e}"))
            .with_timezone(&Utc);
        assert_eq!(clickhouse_time(at), "2026-01-02 03:04:05.123456");
    }

    #[test]
    fn the_ddl_is_the_specifications_plus_the_dedup_window() {
        let sql = create_sql("webhook_logs");
        for part in [
            "CREATE TABLE IF NOT EXISTS `webhook_logs` (",
            "id UUID, webhook_id String, timestamp DateTime64(6, 'UTC'), payload String, \
             headers String, created_at DateTime DEFAULT now()",
            "ENGINE = MergeTree PARTITION BY toYYYYMM(timestamp) ORDER BY (webhook_id, timestamp)",
            "SETTINGS non_replicated_deduplication_window = 10000",
        ] {
            assert!(sql.contains(part), "{part} missing from {sql}");
        }
    }
}
