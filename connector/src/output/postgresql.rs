//! `postgresql` / `postgres` (`docs/reference/module-contract.md` §3.16, R-90): rows in a PostgreSQL table over one
//! pool per connection entry. The row id is `UUIDv5(message_id)` with `ON CONFLICT (id) DO
//! NOTHING`, so a redelivery inserts nothing (with `upsert`: `DO UPDATE` on the upsert column).
//!
//! Errors by SQLSTATE: classes `08`, `40`, `53` and `57P0x` are `Transient`; class `28`,
//! `42501`, `3D000`, `42P01` and the other class-`42` errors (the table no longer fits) are
//! `Unavailable`; classes `22` and `23` are `Permanent`.

use std::str::FromStr;

use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPool, PgSslMode};

use super::sql::{
    self, ColumnType, DbConnection, DbDefaults, DialTarget, Dialect, SqlOutput, SqlPool, SslChoice,
};
use super::{ErrorCategory, ModuleSettings, Output, OutputError};
use crate::settings::Problems;

const DEFAULTS: DbDefaults = DbDefaults {
    module: "postgresql",
    host: Some("localhost"),
    port: 5432,
    database: "postgres",
    user: "postgres",
    pool: (2, 10),
    url_key: "connection_string",
    url_schemes: &["postgres", "postgresql"],
};

/// Builds the module, recording configuration problems.
pub fn build(settings: &ModuleSettings<'_>, problems: &mut Problems) -> Option<Box<dyn Output>> {
    SqlOutput::<PgPool>::build(settings, problems, &DEFAULTS, &Postgres)
}

struct Postgres;

impl Dialect for Postgres {
    fn quote(&self, ident: &str) -> String {
        format!("\"{ident}\"")
    }

    fn type_name(&self, ty: ColumnType) -> String {
        match ty {
            ColumnType::Text => "text".into(),
            ColumnType::Varchar(n) => format!("varchar({n})"),
            ColumnType::Integer => "integer".into(),
            ColumnType::Bigint => "bigint".into(),
            ColumnType::Numeric => "numeric".into(),
            ColumnType::Double => "double precision".into(),
            ColumnType::Boolean => "boolean".into(),
            ColumnType::Timestamp => "timestamptz".into(),
            ColumnType::Json => "jsonb".into(),
            ColumnType::Uuid => "uuid".into(),
        }
    }

    fn placeholder(&self, n: usize, ty: ColumnType) -> String {
        // `::text` pins the parameter type: the values are bound as text, and a statement
        // prepared at setup would otherwise infer the column type for it.
        format!("CAST(${n}::text AS {})", self.type_name(ty))
    }

    fn now(&self) -> &'static str {
        "now()"
    }

    fn conflict(&self, conflict: &str, update: Option<&[String]>) -> Option<String> {
        let target = self.quote(conflict);
        Some(match update {
            Some(cols) if !cols.is_empty() => {
                let set = cols
                    .iter()
                    .map(|c| format!("{0} = EXCLUDED.{0}", self.quote(c)))
                    .collect::<Vec<_>>()
                    .join(", ");
                format!("ON CONFLICT ({target}) DO UPDATE SET {set}")
            }
            _ => format!("ON CONFLICT ({target}) DO NOTHING"),
        })
    }

    fn value(&self, v: &Value, _ty: ColumnType) -> String {
        sql::value_text(v)
    }
}

fn pg_error(what: &str, e: &sqlx::Error) -> OutputError {
    let sqlx::Error::Database(db) = e else {
        return sql::driver_error(what, e);
    };
    let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
    let text = format!("{what}: {} (SQLSTATE {code})", db.message());
    let class = code.get(..2).unwrap_or_default();
    match (class, code.as_str()) {
        ("08", _) | (_, "57P01" | "57P02" | "57P03") => {
            OutputError::transient(ErrorCategory::Connection, text)
        }
        ("40" | "53", _) => OutputError::transient(ErrorCategory::ServerError, text),
        ("28", _) | (_, "42501") => OutputError::unavailable(ErrorCategory::Auth, text),
        (_, "3D000" | "3F000" | "42P01") | ("42", _) => {
            OutputError::unavailable(ErrorCategory::ClientError, text)
        }
        ("22" | "23", _) => OutputError::permanent(ErrorCategory::InvalidData, text),
        _ => OutputError::transient(ErrorCategory::ServerError, text),
    }
}

fn options(conn: &DbConnection) -> Result<PgConnectOptions, OutputError> {
    let mut opts = match &conn.url {
        Some(url) => PgConnectOptions::from_str(url.expose()).map_err(|_| {
            OutputError::permanent(
                ErrorCategory::ClientError,
                "connection_string is not a valid PostgreSQL URL",
            )
        })?,
        None => PgConnectOptions::new()
            .host(&conn.host)
            .port(conn.port)
            .database(&conn.database)
            .username(&conn.user)
            .password(conn.password.expose())
            .ssl_mode(PgSslMode::Disable)
            .application_name("webhook-connector"),
    };
    if let Some(ssl) = conn.ssl {
        opts = opts.ssl_mode(match ssl {
            SslChoice::Disable => PgSslMode::Disable,
            SslChoice::Prefer => PgSslMode::Prefer,
            SslChoice::Require => PgSslMode::Require,
            SslChoice::VerifyFull => PgSslMode::VerifyFull,
        });
    }
    if let Some(ca) = &conn.ssl_ca_cert {
        opts = opts.ssl_root_cert(ca);
    }
    if let Some(cert) = &conn.ssl_cert {
        opts = opts.ssl_client_cert(cert);
    }
    if let Some(key) = &conn.ssl_key {
        opts = opts.ssl_client_key(key);
    }
    Ok(opts)
}

#[async_trait::async_trait]
impl SqlPool for PgPool {
    async fn connect(conn: &DbConnection) -> Result<Self, OutputError> {
        sql::open_pool(conn, options(conn)?, pg_error, "connecting to PostgreSQL").await
    }

    fn dialect(&self) -> &'static dyn Dialect {
        &Postgres
    }

    async fn execute(&self, sql: &str) -> Result<(), OutputError> {
        sqlx::raw_sql(sql)
            .execute(self)
            .await
            .map(|_| ())
            .map_err(|e| pg_error("creating the table", &e))
    }

    async fn check(&self, sql: &str) -> Result<(), OutputError> {
        sqlx::Executor::prepare(self, sql)
            .await
            .map(|_| ())
            .map_err(|e| pg_error("preparing the insert", &e))
    }

    async fn insert(&self, sql: &str, params: &[Option<String>]) -> Result<(), OutputError> {
        let mut q = sqlx::query(sql);
        for param in params {
            q = q.bind(param.as_deref());
        }
        q.execute(self)
            .await
            .map(|_| ())
            .map_err(|e| pg_error("insert", &e))
    }
}

impl DialTarget for PgConnectOptions {
    fn tcp(&self) -> Option<(&str, u16)> {
        self.get_socket()
            .is_none()
            .then(|| (self.get_host(), self.get_port()))
    }
}
