//! What `postgresql` and `mysql` share (`docs/reference/module-contract.md` §3.16, §3.17): the table definition read
//! from module-config (`table`, `storage_mode`, `schema.fields`, `upsert`, `upsert_key`,
//! `include_headers`, `include_timestamp`), the DDL and insert text it produces for a
//! [`Dialect`], the row values of a message, the connection keys both read, and the generic
//! [`SqlOutput`] that runs setup and inserts over a shared pool.
//!
//! SQL text holds only validated, quoted identifiers and placeholders: every value is bound.
//! Every value is bound as text and converted by the database (`CAST` on PostgreSQL, the column
//! type on MySQL), so a value that does not fit its column is the database's `invalid_data`
//! error, which is `Permanent`.

use std::sync::Arc;

use serde_json::{Map, Value};
use webhook_connect_protocol::config_values::Secret;

use super::admission;
use super::client_slot::ClientSlot;
use super::connection_keys;
use super::error_mapping;
use super::identifier::is_identifier;
use super::settings;
use super::shared::{SharedClients, client_key};
use super::{Delivery, ErrorCategory, ErrorKind, ModuleSettings, Output, OutputError, record};
use crate::settings::Problems;
use crate::settings::Reader;

/// The column types `schema.fields` may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ColumnType {
    Text,
    Varchar(u32),
    Integer,
    Bigint,
    Numeric,
    Double,
    Boolean,
    Timestamp,
    Json,
    Uuid,
}

impl ColumnType {
    fn parse(text: &str) -> Option<Self> {
        let t = text.trim().to_ascii_lowercase();
        Some(match t.as_str() {
            "text" => ColumnType::Text,
            "integer" => ColumnType::Integer,
            "bigint" => ColumnType::Bigint,
            "numeric" => ColumnType::Numeric,
            "double precision" => ColumnType::Double,
            "boolean" => ColumnType::Boolean,
            "timestamptz" => ColumnType::Timestamp,
            "jsonb" => ColumnType::Json,
            "uuid" => ColumnType::Uuid,
            _ => {
                let n = t.strip_prefix("varchar(")?.strip_suffix(')')?;
                ColumnType::Varchar(n.trim().parse().ok().filter(|n| (1..=65_535).contains(n))?)
            }
        })
    }
}

/// How one database spells types, quotes names and binds values.
pub(crate) trait Dialect: Send + Sync + 'static {
    /// Quotes a validated identifier.
    fn quote(&self, ident: &str) -> String;
    /// The SQL type of `ty`.
    fn type_name(&self, ty: ColumnType) -> String;
    /// The placeholder of parameter `n` (1-based), converting text to `ty`.
    fn placeholder(&self, n: usize, ty: ColumnType) -> String;
    /// `DEFAULT` expression of `created_at`.
    fn now(&self) -> &'static str;
    /// The clause after `VALUES (…)` that makes a redelivery insert nothing (`None`: the pool
    /// treats a duplicate `id` as success), or that updates `update` on a conflict of
    /// `conflict` when upserting.
    fn conflict(&self, conflict: &str, update: Option<&[String]>) -> Option<String>;
    /// A bound value as the database reads it for a column of `ty`.
    fn value(&self, v: &Value, ty: ColumnType) -> String;
}

/// A payload key mapped to a column.
#[derive(Debug, Clone)]
pub(crate) struct Field {
    key: String,
    column: String,
    ty: ColumnType,
    constraints: Vec<&'static str>,
    default: Option<Value>,
}

/// `storage_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StorageMode {
    Json,
    Relational,
    Hybrid,
}

/// The table a module writes, as read from module-config.
#[derive(Debug, Clone)]
pub(crate) struct TableSpec {
    table: Vec<String>,
    mode: StorageMode,
    fields: Vec<Field>,
    /// Column that an upsert conflicts on; `None` without `upsert`.
    upsert_column: Option<String>,
    include_headers: bool,
    include_timestamp: bool,
}

const FIXED_COLUMNS: &[&str] = &[
    "id",
    "webhook_id",
    "timestamp",
    "payload",
    "headers",
    "created_at",
];

impl TableSpec {
    /// Reads the table keys of module-config.
    pub(crate) fn read(mc: &mut Reader<'_>, p: &mut Problems) -> Option<Self> {
        let table_text = mc
            .string(p, "table")
            .unwrap_or_else(|| "webhook_events".to_owned());
        let table: Vec<String> = table_text.split('.').map(str::to_owned).collect();
        let table_ok = table.len() <= 2 && table.iter().all(|t| is_identifier(t));
        if !table_ok {
            mc.error(
                p,
                "table",
                format!("must be an identifier ([A-Za-z_][A-Za-z0-9_]{{0,62}}), optionally schema.table; got {table_text:?}"),
            );
        }
        let mode = match mc.choice(p, "storage_mode", "json", &["json", "relational", "hybrid"]) {
            "relational" => StorageMode::Relational,
            "hybrid" => StorageMode::Hybrid,
            _ => StorageMode::Json,
        };
        let fields = match mc.object(p, "schema") {
            Some(schema) => {
                let mut sr = Reader::detached(schema, mc.path_of("schema"));
                let fields = sr
                    .object(p, "fields")
                    .map(|f| read_fields(&sr, p, f))
                    .unwrap_or_default();
                sr.finish(p, false);
                fields
            }
            None => Vec::new(),
        };
        if mode != StorageMode::Json && fields.is_empty() {
            mc.error(
                p,
                "schema",
                "storage_mode relational and hybrid need schema.fields",
            );
        }
        let upsert = mc.boolean(p, "upsert", false);
        let upsert_key = mc
            .string(p, "upsert_key")
            .unwrap_or_else(|| "id".to_owned());
        let upsert_column = match (upsert, mode) {
            (false, _) => None,
            (true, StorageMode::Json) => {
                mc.warn(
                    p,
                    "upsert",
                    "ignored in storage_mode json (the row is inserted once per message)",
                );
                None
            }
            (true, _) => match fields.iter().find(|f| f.key == upsert_key) {
                Some(f) if f.constraints.iter().any(|c| *c != "NOT NULL") => Some(f.column.clone()),
                Some(_) => {
                    mc.error(
                        p,
                        "upsert_key",
                        format!("the column of {upsert_key:?} must be UNIQUE or the PRIMARY KEY"),
                    );
                    None
                }
                None if upsert_key == "id" => Some("id".to_owned()),
                None => {
                    mc.error(
                        p,
                        "upsert_key",
                        format!("{upsert_key:?} is not a key of schema.fields"),
                    );
                    None
                }
            },
        };
        let include_headers = mc.boolean(p, "include_headers", true);
        let include_timestamp = mc.boolean(p, "include_timestamp", true);
        if !table_ok {
            return None;
        }
        Some(TableSpec {
            table,
            mode,
            fields,
            upsert_column,
            include_headers,
            include_timestamp,
        })
    }

    fn has_document_columns(&self) -> bool {
        self.mode != StorageMode::Relational
    }

    fn mapped(&self) -> &[Field] {
        if self.mode == StorageMode::Json {
            &[]
        } else {
            &self.fields
        }
    }

    fn table_name(&self, d: &dyn Dialect) -> String {
        self.table
            .iter()
            .map(|t| d.quote(t))
            .collect::<Vec<_>>()
            .join(".")
    }

    /// The inserted columns and their types, in order.
    fn columns(&self) -> Vec<(&str, ColumnType)> {
        let mut cols = vec![("id", ColumnType::Uuid)];
        if self.has_document_columns() {
            cols.extend([
                ("webhook_id", ColumnType::Text),
                ("timestamp", ColumnType::Timestamp),
                ("payload", ColumnType::Json),
                ("headers", ColumnType::Json),
            ]);
        }
        cols.extend(self.mapped().iter().map(|f| (f.column.as_str(), f.ty)));
        cols
    }

    /// `CREATE TABLE IF NOT EXISTS` with the columns of the storage mode.
    pub(crate) fn create_sql(&self, d: &dyn Dialect) -> String {
        let mut defs = vec![format!(
            "{} {} PRIMARY KEY",
            d.quote("id"),
            d.type_name(ColumnType::Uuid)
        )];
        if self.has_document_columns() {
            for (name, ty, null) in [
                ("webhook_id", ColumnType::Text, " NOT NULL"),
                ("timestamp", ColumnType::Timestamp, " NOT NULL"),
                ("payload", ColumnType::Json, " NOT NULL"),
                ("headers", ColumnType::Json, ""),
            ] {
                defs.push(format!("{} {}{null}", d.quote(name), d.type_name(ty)));
            }
        }
        for f in self.mapped() {
            let mut def = format!("{} {}", d.quote(&f.column), d.type_name(f.ty));
            for c in &f.constraints {
                def.push(' ');
                def.push_str(c);
            }
            defs.push(def);
        }
        defs.push(format!(
            "{} {} NOT NULL DEFAULT {}",
            d.quote("created_at"),
            d.type_name(ColumnType::Timestamp),
            d.now()
        ));
        format!(
            "CREATE TABLE IF NOT EXISTS {} ({})",
            self.table_name(d),
            defs.join(", ")
        )
    }

    /// The parameterised `INSERT`.
    pub(crate) fn insert_sql(&self, d: &dyn Dialect) -> String {
        let cols = self.columns();
        let names = cols
            .iter()
            .map(|(c, _)| d.quote(c))
            .collect::<Vec<_>>()
            .join(", ");
        let params = cols
            .iter()
            .enumerate()
            .map(|(i, (_, ty))| d.placeholder(i + 1, *ty))
            .collect::<Vec<_>>()
            .join(", ");
        let mut sql = format!(
            "INSERT INTO {} ({names}) VALUES ({params})",
            self.table_name(d)
        );
        let clause = match &self.upsert_column {
            Some(key) => {
                let update: Vec<String> = cols
                    .iter()
                    .map(|(c, _)| (*c).to_owned())
                    .filter(|c| c != "id" && c != key)
                    .collect();
                d.conflict(key, Some(&update))
            }
            None => d.conflict("id", None),
        };
        if let Some(clause) = clause {
            sql.push(' ');
            sql.push_str(&clause);
        }
        sql
    }

    /// The bound values of `delivery`, in [`Self::insert_sql`] order.
    pub(crate) fn row(&self, d: &dyn Dialect, delivery: &Delivery) -> Vec<Option<String>> {
        let mut row = vec![Some(record::message_uuid(&delivery.message_id).to_string())];
        if self.has_document_columns() {
            let at = if self.include_timestamp {
                record::received_at(delivery)
            } else {
                chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
            };
            row.push(Some(delivery.webhook_id.clone()));
            row.push(Some(d.value(&Value::String(at), ColumnType::Timestamp)));
            row.push(Some(delivery.payload_json()));
            row.push(
                self.include_headers
                    .then(|| record::headers_json(delivery).to_string()),
            );
        }
        for f in self.mapped() {
            let v = delivery
                .payload
                .get(&f.key)
                .filter(|v| !v.is_null())
                .or(f.default.as_ref());
            row.push(v.map(|v| d.value(v, f.ty)));
        }
        row
    }
}

fn read_fields(sr: &Reader<'_>, p: &mut Problems, fields: &Map<String, Value>) -> Vec<Field> {
    let mut out: Vec<Field> = Vec::new();
    for (key, spec) in fields {
        let path = sr.path_of(&format!("fields.{key}"));
        let Value::Object(spec) = spec else {
            p.error(format!("{path}: expected an object, got {spec}"));
            continue;
        };
        let mut fr = Reader::detached(spec, path.clone());
        let column = fr.string(p, "column").unwrap_or_else(|| key.clone());
        if !is_identifier(&column) {
            fr.error(p, "column", format!("{column:?} is not an identifier"));
            continue;
        }
        if FIXED_COLUMNS.contains(&column.to_ascii_lowercase().as_str())
            || out.iter().any(|f| f.column.eq_ignore_ascii_case(&column))
        {
            fr.error(p, "column", format!("{column:?} is used twice or reserved"));
            continue;
        }
        let ty_text = fr.string(p, "type").unwrap_or_else(|| "text".to_owned());
        let Some(ty) = ColumnType::parse(&ty_text) else {
            fr.error(
                p,
                "type",
                format!(
                    "must be one of text, varchar(n), integer, bigint, numeric, double precision, \
                     boolean, timestamptz, jsonb, uuid; got {ty_text:?}"
                ),
            );
            continue;
        };
        let mut constraints = Vec::new();
        for c in fr.string_list(p, "constraints").unwrap_or_default() {
            match c.trim().to_ascii_uppercase().as_str() {
                "NOT NULL" => constraints.push("NOT NULL"),
                "UNIQUE" => constraints.push("UNIQUE"),
                "PRIMARY KEY" => {
                    fr.error(
                        p,
                        "constraints",
                        "PRIMARY KEY is the id column; use UNIQUE for a mapped column",
                    );
                }
                other => fr.error(
                    p,
                    "constraints",
                    format!("must be NOT NULL, UNIQUE or PRIMARY KEY; got {other:?}"),
                ),
            }
        }
        let default = fr.get("default").cloned();
        fr.finish(p, false);
        out.push(Field {
            key: key.clone(),
            column,
            ty,
            constraints,
            default,
        });
    }
    out
}

/// JSON value as text: strings as themselves, everything else as its JSON.
pub(crate) fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `ssl` of a database connection: a boolean or a mode name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SslChoice {
    Disable,
    Prefer,
    Require,
    VerifyFull,
}

/// Connection keys both database modules read.
#[derive(Debug, Clone)]
pub(crate) struct DbConnection {
    pub(crate) key: String,
    pub(crate) url: Option<Secret>,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) database: String,
    pub(crate) user: String,
    pub(crate) password: Secret,
    /// `None` when unset: no TLS, or what `url` says.
    pub(crate) ssl: Option<SslChoice>,
    pub(crate) ssl_ca_cert: Option<String>,
    pub(crate) ssl_cert: Option<String>,
    pub(crate) ssl_key: Option<String>,
    pub(crate) pool_min: u32,
    pub(crate) pool_max: u32,
    /// `outbound_policy: strict`, applied to every address the host resolves to.
    pub(crate) strict: bool,
}

/// Defaults of one database module's connection keys.
pub(crate) struct DbDefaults {
    pub(crate) module: &'static str,
    pub(crate) host: Option<&'static str>,
    pub(crate) port: u16,
    pub(crate) database: &'static str,
    pub(crate) user: &'static str,
    pub(crate) pool: (u32, u32),
    pub(crate) url_key: &'static str,
    pub(crate) url_schemes: &'static [&'static str],
}

impl DbConnection {
    /// Reads the connection entry (or the defaults when none is named).
    pub(crate) fn read(s: &ModuleSettings<'_>, p: &mut Problems, d: &DbDefaults) -> Option<Self> {
        let mut r = connection_keys::connection(s);
        let url = connection_keys::url(&mut r, p, d.url_key, d.url_schemes, s.outbound_strict);
        let host = if url.is_some() {
            let _ = r.get("host");
            Some(String::new())
        } else {
            connection_keys::host(&mut r, p, "host", d.host, s.outbound_strict, &[])
        };
        let port = connection_keys::port(&mut r, p, "port", d.port);
        let database = r
            .string(p, "database")
            .unwrap_or_else(|| d.database.to_owned());
        let user = r.string(p, "user").unwrap_or_else(|| d.user.to_owned());
        let password = connection_keys::secret(&mut r, p, "password").unwrap_or_default();
        let ssl = match r.get("ssl") {
            None => None,
            Some(Value::Bool(true)) => Some(SslChoice::Require),
            Some(Value::Bool(false)) => Some(SslChoice::Disable),
            Some(Value::String(m)) => {
                match m.to_ascii_lowercase().as_str() {
                    "disable" | "false" => Some(SslChoice::Disable),
                    "prefer" => Some(SslChoice::Prefer),
                    "require" | "true" => Some(SslChoice::Require),
                    "verify-full" => Some(SslChoice::VerifyFull),
                    _ => {
                        r.error(
                        p,
                        "ssl",
                        format!("must be a boolean or disable, prefer, require, verify-full; got {m:?}"),
                    );
                        None
                    }
                }
            }
            Some(other) => {
                r.error(
                    p,
                    "ssl",
                    format!("expected a boolean or a mode, got {other}"),
                );
                None
            }
        };
        let ssl_ca_cert = r.string(p, "ssl_ca_cert");
        let ssl_cert = r.string(p, "ssl_cert");
        let ssl_key = r.string(p, "ssl_key");
        let pool_min = r.integer_in(p, "pool_min_size", i64::from(d.pool.0), 0, 1000);
        let pool_max = r.integer_in(p, "pool_max_size", i64::from(d.pool.1), 1, 1000);
        if pool_min > pool_max {
            r.error(p, "pool_min_size", "must not exceed pool_max_size");
        }
        r.finish(p, false);
        let empty = Map::new();
        Some(DbConnection {
            key: client_key(
                d.module,
                s.connection_name.unwrap_or("<default>"),
                s.connection.unwrap_or(&empty),
            ),
            url,
            host: host?,
            port,
            database,
            user,
            password,
            ssl,
            ssl_ca_cert,
            ssl_cert,
            ssl_key,
            pool_min: u32::try_from(pool_min).unwrap_or(d.pool.0),
            pool_max: u32::try_from(pool_max).unwrap_or(d.pool.1),
            strict: s.outbound_strict,
        })
    }
}

/// The outbound policy when a pool is created (`docs/reference/module-contract.md` §2.3): resolves the host of the
/// connect options (as the driver read them from the fields or the URL) through
/// [`admission::admit`]. `None` is a Unix socket, which has no host. The driver resolves the name
/// again for each connection it opens — the first, and those the pool opens later on its own
/// (growing towards `pool_max_size`, keeping `pool_min_size`, replacing closed connections) —
/// without the check; a pool is only created through this check.
async fn admit(conn: &DbConnection, tcp: Option<(&str, u16)>) -> Result<(), OutputError> {
    let Some((host, port)) = tcp else {
        return Ok(());
    };
    error_mapping::within(RESOLVE_TIMEOUT, "resolving the database host", async {
        admission::admit(host, port, conn.strict, &[]).await
    })
    .await
    .map(|_| ())
}

/// Connect options that know the TCP endpoint they will dial (`None`: a Unix socket).
pub(crate) trait DialTarget {
    fn tcp(&self) -> Option<(&str, u16)>;
}

/// Bound on waiting for a pooled connection.
const ACQUIRE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Opens the pool of `conn` over `opts`: the outbound policy first ([`admit`]), then the driver
/// with the connection's pool sizes; a driver failure is mapped by `driver_error`.
pub(crate) async fn open_pool<DB>(
    conn: &DbConnection,
    opts: <DB::Connection as sqlx::Connection>::Options,
    driver_error: fn(&str, &sqlx::Error) -> OutputError,
    what: &str,
) -> Result<sqlx::Pool<DB>, OutputError>
where
    DB: sqlx::Database,
    <DB::Connection as sqlx::Connection>::Options: DialTarget,
{
    admit(conn, opts.tcp()).await?;
    sqlx::pool::PoolOptions::<DB>::new()
        .min_connections(conn.pool_min)
        .max_connections(conn.pool_max)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(opts)
        .await
        .map_err(|e| driver_error(what, &e))
}

/// Bound on the host lookup of [`admit`].
const RESOLVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A driver error that is not the database's own: connection and pool failures are `Transient`,
/// TLS failures `Unavailable`, bad settings `Permanent`.
pub(crate) fn driver_error(what: &str, e: &sqlx::Error) -> OutputError {
    use ErrorCategory as C;
    let text = format!("{what}: {e}");
    match e {
        sqlx::Error::PoolTimedOut => OutputError::transient(C::Timeout, text),
        sqlx::Error::Io(io) => error_mapping::io_error(what, io),
        sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => {
            OutputError::transient(C::Connection, text)
        }
        sqlx::Error::Tls(_) => OutputError::unavailable(C::Connection, text),
        sqlx::Error::Configuration(_) => OutputError::permanent(C::ClientError, text),
        sqlx::Error::Protocol(_) => OutputError::transient(C::ServerError, text),
        _ => OutputError::transient(C::Other, text),
    }
}

/// A database pool as the generic sink uses it.
#[async_trait::async_trait]
pub(crate) trait SqlPool: Send + Sync + 'static {
    /// The pool for `conn`.
    async fn connect(conn: &DbConnection) -> Result<Self, OutputError>
    where
        Self: Sized;
    /// The database's dialect.
    fn dialect(&self) -> &'static dyn Dialect;
    /// Runs a statement without parameters (DDL).
    async fn execute(&self, sql: &str) -> Result<(), OutputError>;
    /// Prepares `sql` without running it, so the database checks columns and conflict targets.
    async fn check(&self, sql: &str) -> Result<(), OutputError>;
    /// Runs the insert. A duplicate of the primary key (`id`) is success: it is a redelivery.
    async fn insert(&self, sql: &str, params: &[Option<String>]) -> Result<(), OutputError>;
}

/// The database sink of `postgresql` and `mysql`.
pub(crate) struct SqlOutput<P: SqlPool> {
    table: TableSpec,
    conn: DbConnection,
    insert: String,
    shared: Arc<SharedClients>,
    pool: ClientSlot<P>,
}

impl<P: SqlPool> std::fmt::Debug for SqlOutput<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlOutput")
            .field("table", &self.table.table)
            .field("conn", &self.conn)
            .finish_non_exhaustive()
    }
}

impl<P: SqlPool> SqlOutput<P> {
    /// Builds the sink: module-config through [`TableSpec::read`], the connection with `d`.
    pub(crate) fn build(
        s: &ModuleSettings<'_>,
        p: &mut Problems,
        d: &DbDefaults,
        dialect: &'static dyn Dialect,
    ) -> Option<Box<dyn Output>> {
        let before = p.errors.len();
        let mut mc = s.config_reader();
        let table = TableSpec::read(&mut mc, p);
        mc.finish(p, false);
        let conn = DbConnection::read(s, p, d);
        let table = table?;
        let out: Box<dyn Output> = Box::new(SqlOutput::<P> {
            insert: table.insert_sql(dialect),
            table,
            conn: conn?,
            shared: s.shared.clone(),
            pool: ClientSlot::default(),
        });
        settings::unless_errors(p, before, Some(out))
    }

    async fn pool(&self) -> Result<Arc<P>, OutputError> {
        self.pool
            .get_or(
                self.shared
                    .get_or_connect(&self.conn.key, || P::connect(&self.conn)),
            )
            .await
    }
}

#[async_trait::async_trait]
impl<P: SqlPool> Output for SqlOutput<P> {
    async fn setup(&self) -> Result<(), OutputError> {
        let pool = self.pool().await?;
        pool.execute(&self.table.create_sql(pool.dialect())).await?;
        // An existing table that cannot take the insert (missing column, no unique constraint
        // for the upsert) is a configuration error: exit, not retry. Permission errors stay
        // `Unavailable`.
        pool.check(&self.insert).await.map_err(|e| {
            if e.kind == ErrorKind::Unavailable && e.category == ErrorCategory::ClientError {
                OutputError::permanent(
                    e.category,
                    format!("the table does not fit the configuration: {}", e.message),
                )
            } else {
                e
            }
        })
    }

    async fn process(&self, delivery: &Delivery) -> Result<(), OutputError> {
        let pool = self.pool().await?;
        let row = self.table.row(pool.dialect(), delivery);
        pool.insert(&self.insert, &row).await
    }

    async fn teardown(&self) {
        self.pool.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Plain;
    impl Dialect for Plain {
        fn quote(&self, ident: &str) -> String {
            format!("\"{ident}\"")
        }
        fn type_name(&self, ty: ColumnType) -> String {
            format!("{ty:?}")
        }
        fn placeholder(&self, n: usize, _: ColumnType) -> String {
            format!("${n}")
        }
        fn now(&self) -> &'static str {
            "now()"
        }
        fn conflict(&self, c: &str, update: Option<&[String]>) -> Option<String> {
            Some(format!(
                "ON CONFLICT ({c}) {}",
                update.map_or(0, <[String]>::len)
            ))
        }
        fn value(&self, v: &Value, _: ColumnType) -> String {
            value_text(v)
        }
    }

    fn spec(mc: Value) -> (Option<TableSpec>, Problems) {
        let Value::Object(m) = mc else { panic!() };
        let mut p = Problems::default();
        let mut r = Reader::detached(&m, "w.module-config".into());
        (TableSpec::read(&mut r, &mut p), p)
    }

    #[test]
    fn relational_mode_inserts_only_the_columns_it_created() {
        let (t, p) = spec(json!({"storage_mode": "relational", "table": "s.orders",
            "schema": {"fields": {"order": {"column": "order_no", "type": "integer",
                                            "constraints": ["UNIQUE"]}}}}));
        assert!(p.is_ok(), "{p:?}");
        let t = t.expect("spec");
        let create = t.create_sql(&Plain);
        assert!(
            create.starts_with("CREATE TABLE IF NOT EXISTS \"s\".\"orders\""),
            "{create}"
        );
        assert!(!create.contains("payload"), "{create}");
        assert_eq!(
            t.insert_sql(&Plain),
            "INSERT INTO \"s\".\"orders\" (\"id\", \"order_no\") VALUES ($1, $2) ON CONFLICT (id) 0"
        );
    }

    #[test]
    fn bad_identifiers_types_and_upsert_keys_are_load_errors() {
        for mc in [
            json!({"table": "orders; drop"}),
            json!({"table": "a.b.c"}),
            json!({"storage_mode": "hybrid", "schema": {"fields": {"x": {"type": "money"}}}}),
            json!({"storage_mode": "hybrid", "schema": {"fields": {"x": {"column": "payload"}}}}),
            json!({"storage_mode": "relational", "upsert": true, "upsert_key": "x",
                   "schema": {"fields": {"x": {"type": "text"}}}}),
            json!({"storage_mode": "relational"}),
        ] {
            let (_, p) = spec(mc.clone());
            assert!(!p.is_ok(), "{mc}");
        }
    }

    #[test]
    fn upsert_in_json_mode_is_a_warning() {
        let (t, p) = spec(json!({"upsert": true}));
        assert!(t.is_some() && p.is_ok() && !p.warnings.is_empty(), "{p:?}");
    }
}
