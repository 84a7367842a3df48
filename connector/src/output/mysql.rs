//! `mysql` / `mariadb` (`docs/reference/module-contract.md` §3.17, R-91): rows in a MySQL or MariaDB table over one
//! shared, reference-counted pool per connection entry; one instance's `teardown` never closes
//! the pool under the others. The table is created at every setup.
//!
//! Idempotency: `id = UUIDv5(message_id)` is the primary key, and a duplicate **of that key
//! only** is taken as the redelivery it is. (`ON DUPLICATE KEY UPDATE id = id` would also hide a
//! duplicate on any other unique key, which must be `Permanent` 1062.) With `upsert` the insert
//! ends in `ON DUPLICATE KEY UPDATE`.
//!
//! Errors by MySQL error number: 1040, 1053, 1205, 1213 (and the client's 2002/2003/2006/2013,
//! which arrive as I/O errors) are `Transient`; 1044, 1045, 1049, 1142, 1146, 1054 `Unavailable`;
//! 1048, 1062 (other keys), 1264, 1292, 1366, 1406, 3140 and MariaDB's 4025 `Permanent`.

use std::str::FromStr;

use serde_json::Value;
use sqlx::mysql::{MySqlConnectOptions, MySqlDatabaseError, MySqlPool, MySqlSslMode};

use super::sql::{
    self, ColumnType, DbConnection, DbDefaults, DialTarget, Dialect, SqlOutput, SqlPool, SslChoice,
};
use super::{ErrorCategory, ModuleSettings, Output, OutputError};
use crate::settings::Problems;

const DEFAULTS: DbDefaults = DbDefaults {
    module: "mysql",
    host: None,
    port: 3306,
    database: "mysql",
    user: "root",
    pool: (1, 10),
    url_key: "url",
    url_schemes: &["mysql", "mariadb"],
};

/// Builds the module, recording configuration problems.
pub fn build(settings: &ModuleSettings<'_>, problems: &mut Problems) -> Option<Box<dyn Output>> {
    let out = SqlOutput::<MySqlPool>::build(settings, problems, &DEFAULTS, &MySql);
    let database = settings
        .connection
        .and_then(|c| c.get("database"))
        .and_then(Value::as_str);
    if out.is_some() && database.is_none_or(|d| d.eq_ignore_ascii_case("mysql")) {
        problems.warn(format!(
            "connections.json: {}.database: \"mysql\" is a system schema; name an application database",
            settings.connection_name.unwrap_or("connection")
        ));
    }
    out
}

struct MySql;

impl Dialect for MySql {
    fn quote(&self, ident: &str) -> String {
        format!("`{ident}`")
    }

    fn type_name(&self, ty: ColumnType) -> String {
        match ty {
            ColumnType::Text => "TEXT".into(),
            ColumnType::Varchar(n) => format!("VARCHAR({n})"),
            ColumnType::Integer => "INT".into(),
            ColumnType::Bigint => "BIGINT".into(),
            ColumnType::Numeric => "DECIMAL(65,10)".into(),
            ColumnType::Double => "DOUBLE".into(),
            ColumnType::Boolean => "BOOLEAN".into(),
            ColumnType::Timestamp => "DATETIME(6)".into(),
            ColumnType::Json => "JSON".into(),
            ColumnType::Uuid => "CHAR(36)".into(),
        }
    }

    fn placeholder(&self, _n: usize, _ty: ColumnType) -> String {
        "?".into()
    }

    fn now(&self) -> &'static str {
        "CURRENT_TIMESTAMP(6)"
    }

    fn conflict(&self, _conflict: &str, update: Option<&[String]>) -> Option<String> {
        let cols = update?;
        let set = if cols.is_empty() {
            "`id` = `id`".to_owned()
        } else {
            cols.iter()
                .map(|c| format!("{0} = VALUES({0})", self.quote(c)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        Some(format!("ON DUPLICATE KEY UPDATE {set}"))
    }

    fn value(&self, v: &Value, ty: ColumnType) -> String {
        match (ty, v) {
            (ColumnType::Boolean, Value::Bool(b)) => if *b { "1" } else { "0" }.to_owned(),
            // DATETIME takes neither `T` nor a zone: UTC, written out.
            (ColumnType::Timestamp, Value::String(s)) => chrono::DateTime::parse_from_rfc3339(s)
                .map(|t| {
                    t.with_timezone(&chrono::Utc)
                        .format("%Y-%m-%d %H:%M:%S%.6f")
                        .to_string()
                })
                .unwrap_or_else(|_| s.clone()),
            _ => sql::value_text(v),
        }
    }
}

fn mysql_error(what: &str, e: &sqlx::Error) -> OutputError {
    let sqlx::Error::Database(db) = e else {
        return sql::driver_error(what, e);
    };
    let number = db
        .try_downcast_ref::<MySqlDatabaseError>()
        .map(MySqlDatabaseError::number)
        .unwrap_or_default();
    let text = format!("{what}: {} (error {number})", db.message());
    match number {
        1040 | 1053 | 1205 | 1213 | 2002 | 2003 | 2006 | 2013 => {
            OutputError::transient(ErrorCategory::Connection, text)
        }
        1044 | 1045 | 1142 => OutputError::unavailable(ErrorCategory::Auth, text),
        1049 | 1146 | 1054 => OutputError::unavailable(ErrorCategory::ClientError, text),
        1048 | 1062 | 1264 | 1292 | 1366 | 1406 | 3140 | 4025 => {
            OutputError::permanent(ErrorCategory::InvalidData, text)
        }
        _ => OutputError::transient(ErrorCategory::ServerError, text),
    }
}

/// A duplicate of the primary key (`id`): the row of this message is already there.
fn is_duplicate_id(e: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = e else {
        return false;
    };
    db.try_downcast_ref::<MySqlDatabaseError>()
        .is_some_and(|m| m.number() == 1062 && m.message().contains("PRIMARY'"))
}

fn options(conn: &DbConnection) -> Result<MySqlConnectOptions, OutputError> {
    let mut opts = match &conn.url {
        Some(url) => MySqlConnectOptions::from_str(url.expose()).map_err(|_| {
            OutputError::permanent(ErrorCategory::ClientError, "url is not a valid MySQL URL")
        })?,
        None => MySqlConnectOptions::new()
            .host(&conn.host)
            .port(conn.port)
            .database(&conn.database)
            .username(&conn.user)
            .password(conn.password.expose())
            .ssl_mode(MySqlSslMode::Disabled),
    };
    if let Some(ssl) = conn.ssl {
        opts = opts.ssl_mode(match ssl {
            SslChoice::Disable => MySqlSslMode::Disabled,
            SslChoice::Prefer => MySqlSslMode::Preferred,
            SslChoice::Require => MySqlSslMode::Required,
            SslChoice::VerifyFull => MySqlSslMode::VerifyIdentity,
        });
    }
    if let Some(ca) = &conn.ssl_ca_cert {
        opts = opts.ssl_ca(ca);
    }
    if let Some(cert) = &conn.ssl_cert {
        opts = opts.ssl_client_cert(cert);
    }
    if let Some(key) = &conn.ssl_key {
        opts = opts.ssl_client_key(key);
    }
    Ok(opts.charset("utf8mb4"))
}

#[async_trait::async_trait]
impl SqlPool for MySqlPool {
    async fn connect(conn: &DbConnection) -> Result<Self, OutputError> {
        sql::open_pool(conn, options(conn)?, mysql_error, "connecting to MySQL").await
    }

    fn dialect(&self) -> &'static dyn Dialect {
        &MySql
    }

    async fn execute(&self, sql: &str) -> Result<(), OutputError> {
        sqlx::raw_sql(sql)
            .execute(self)
            .await
            .map(|_| ())
            .map_err(|e| mysql_error("creating the table", &e))
    }

    async fn check(&self, sql: &str) -> Result<(), OutputError> {
        sqlx::Executor::prepare(self, sql)
            .await
            .map(|_| ())
            .map_err(|e| mysql_error("preparing the insert", &e))
    }

    async fn insert(&self, sql: &str, params: &[Option<String>]) -> Result<(), OutputError> {
        let mut q = sqlx::query(sql);
        for param in params {
            q = q.bind(param.as_deref());
        }
        match q.execute(self).await {
            Ok(_) => Ok(()),
            Err(e) if is_duplicate_id(&e) => Ok(()),
            Err(e) => Err(mysql_error("insert", &e)),
        }
    }
}

impl DialTarget for MySqlConnectOptions {
    fn tcp(&self) -> Option<(&str, u16)> {
        self.get_socket()
            .is_none()
            .then(|| (self.get_host(), self.get_port()))
    }
}
