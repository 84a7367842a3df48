//! `postgresql` against a real PostgreSQL (`TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`): rows read back in json, relational and hybrid
//! modes, idempotent redelivery and upsert, SQLSTATE mapping, and one pool for two
//! instances and 50 messages.

use serde_json::{Value, json};
use sqlx::Row;
use sqlx::postgres::PgPool;
use webhook_connector::output::shared::SharedClients;
use webhook_connector::output::{ErrorCategory, ErrorKind, postgresql};

use crate::sinks::{
    Cleanup, Entry, closed_port, delivery, env_or, payload, require_server, unique,
};

fn url() -> String {
    env_or(
        "TEST_POSTGRES_URL",
        "postgres://postgres@127.0.0.1:5432/test",
    )
}

async fn admin() -> PgPool {
    let u = url();
    let hostport = u
        .split('@')
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or("127.0.0.1:5432");
    require_server("TEST_POSTGRES_URL", hostport).await;
    PgPool::connect(&u)
        .await
        .expect("connect to TEST_POSTGRES_URL")
}

fn connection(extra: Value) -> Value {
    let mut c = json!({"type": "postgresql", "connection_string": url()});
    if let (Some(c), Value::Object(extra)) = (c.as_object_mut(), extra) {
        c.extend(extra);
    }
    c
}

/// A table with a unique name, dropped at the end of the test.
fn table() -> (String, Cleanup) {
    let name = unique("wc_pg");
    let drop_name = name.clone();
    let cleanup = Cleanup::new(move || async move {
        if let Ok(pool) = PgPool::connect(&url()).await {
            let _ = sqlx::query(&format!("DROP TABLE IF EXISTS \"{drop_name}\""))
                .execute(&pool)
                .await;
        }
    });
    (name, cleanup)
}

#[tokio::test]
async fn json_mode_stores_the_message_once_even_when_redelivered() {
    let pool = admin().await;
    let (table, _cleanup) = table();
    let entry =
        Entry::new("postgresql", json!({"table": table})).connection("db", connection(json!({})));
    let out = entry.build(postgresql::build);
    out.setup().await.unwrap();
    let d = delivery("msg_pg_1", payload(1));
    out.process(&d).await.unwrap();
    out.process(&d).await.unwrap();
    let rows = sqlx::query(&format!(
        "SELECT id::text AS id, webhook_id, timestamp, payload::text AS payload, \
         headers::text AS headers FROM \"{table}\""
    ))
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 1, "a redelivery inserts no second row");
    let row = &rows[0];
    let id: String = row.get("id");
    assert_eq!(id.len(), 36);
    assert_eq!(&id[14..15], "5", "UUIDv5 of the message id: {id}");
    assert_eq!(row.get::<String, _>("webhook_id"), "orders");
    let stored: Value = serde_json::from_str(&row.get::<String, _>("payload")).unwrap();
    assert_eq!(stored, payload(1));
    let headers: Value = serde_json::from_str(&row.get::<String, _>("headers")).unwrap();
    assert_eq!(headers["x-event"], "order.created");
    out.teardown().await;
}

fn order_fields() -> Value {
    json!({"fields": {
        "order": {"column": "order_no", "type": "integer", "constraints": ["UNIQUE"]},
        "note": {"type": "varchar(50)"},
        "paid": {"type": "boolean", "default": false},
    }})
}

/// relational mode creates and writes only its own columns.
#[tokio::test]
async fn relational_mode_writes_only_the_mapped_columns() {
    let pool = admin().await;
    let (table, _cleanup) = table();
    let entry = Entry::new(
        "postgres",
        json!({"table": table, "storage_mode": "relational", "schema": order_fields()}),
    )
    .connection("db", connection(json!({})));
    let out = entry.build(postgresql::build);
    out.setup().await.unwrap();
    out.process(&delivery("msg_rel", payload(7))).await.unwrap();
    let columns: Vec<String> = sqlx::query_scalar(
        "SELECT column_name::text FROM information_schema.columns WHERE table_name = $1 ORDER BY ordinal_position",
    )
    .bind(&table)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(columns, ["id", "order_no", "note", "paid", "created_at"]);
    let row = sqlx::query(&format!("SELECT order_no, note, paid FROM \"{table}\""))
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(row.get::<i32, _>("order_no"), 7);
    assert_eq!(row.get::<String, _>("note"), "snow ☃");
    assert!(!row.get::<bool, _>("paid"), "the default is bound");
}

#[tokio::test]
async fn hybrid_mode_stores_the_document_and_the_mapped_columns() {
    let pool = admin().await;
    let (table, _cleanup) = table();
    let entry = Entry::new(
        "postgresql",
        json!({"table": table, "storage_mode": "hybrid", "schema": order_fields()}),
    )
    .connection("db", connection(json!({})));
    let out = entry.build(postgresql::build);
    out.setup().await.unwrap();
    out.process(&delivery("msg_hyb", payload(8))).await.unwrap();
    let row = sqlx::query(&format!(
        "SELECT order_no, payload->>'note' AS n FROM \"{table}\""
    ))
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(row.get::<i32, _>("order_no"), 8);
    assert_eq!(row.get::<String, _>("n"), "snow ☃");
}

#[tokio::test]
async fn upsert_updates_the_row_with_the_same_key() {
    let pool = admin().await;
    let (table, _cleanup) = table();
    let entry = Entry::new(
        "postgresql",
        json!({"table": table, "storage_mode": "relational", "schema": order_fields(),
               "upsert": true, "upsert_key": "order"}),
    )
    .connection("db", connection(json!({})));
    let out = entry.build(postgresql::build);
    out.setup().await.unwrap();
    out.process(&delivery("first", json!({"order": 1, "note": "old"})))
        .await
        .unwrap();
    out.process(&delivery("second", json!({"order": 1, "note": "new"})))
        .await
        .unwrap();
    let notes: Vec<String> = sqlx::query_scalar(&format!("SELECT note FROM \"{table}\""))
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(notes, ["new"]);
}

/// Class 22 (invalid text for an integer column) is `Permanent`: the message can never fit.
#[tokio::test]
async fn a_value_that_does_not_fit_its_column_is_permanent() {
    let _pool = admin().await;
    let (table, _cleanup) = table();
    let entry = Entry::new(
        "postgresql",
        json!({"table": table, "storage_mode": "relational", "schema": order_fields()}),
    )
    .connection("db", connection(json!({})));
    let out = entry.build(postgresql::build);
    out.setup().await.unwrap();
    let err = out
        .process(&delivery("bad", json!({"order": "not a number"})))
        .await
        .unwrap_err();
    assert_eq!(
        (err.kind, err.category),
        (ErrorKind::Permanent, ErrorCategory::InvalidData),
        "{err}"
    );
    assert!(err.message.contains("22P02"), "{err}");
}

/// An existing table that cannot take the configured insert fails setup as `Permanent`.
#[tokio::test]
async fn an_existing_table_without_the_mapped_columns_fails_setup_permanently() {
    let pool = admin().await;
    let (table, _cleanup) = table();
    sqlx::query(&format!("CREATE TABLE \"{table}\" (id uuid PRIMARY KEY)"))
        .execute(&pool)
        .await
        .unwrap();
    let entry = Entry::new(
        "postgresql",
        json!({"table": table, "storage_mode": "relational", "schema": order_fields()}),
    )
    .connection("db", connection(json!({})));
    let err = entry.build(postgresql::build).setup().await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Permanent, "{err}");
}

#[tokio::test]
async fn an_unknown_role_is_unavailable_auth_and_an_unknown_database_unavailable() {
    let _pool = admin().await;
    let u = url();
    let hostport = u
        .split('@')
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or("127.0.0.1:5432");
    let (host, port) = hostport.split_once(':').unwrap_or((hostport, "5432"));
    let role = Entry::new("postgresql", json!({})).connection(
        "db",
        json!({"type": "postgresql", "host": host, "port": port,
                                  "database": "test", "user": unique("nobody"), "password": "x"}),
    );
    let err = role.build(postgresql::build).setup().await.unwrap_err();
    assert_eq!(
        (err.kind, err.category),
        (ErrorKind::Unavailable, ErrorCategory::Auth),
        "{err}"
    );
    let db = Entry::new("postgresql", json!({})).connection(
        "db",
        json!({"type": "postgresql", "host": host, "port": port,
                                  "database": unique("nodb"), "user": "postgres"}),
    );
    let err = db.build(postgresql::build).setup().await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unavailable, "{err}");
}

#[tokio::test]
async fn a_closed_port_is_transient() {
    let port = closed_port().await;
    let entry = Entry::new("postgresql", json!({})).connection(
        "db",
        json!({"type": "postgresql", "host": "127.0.0.1", "port": port}),
    );
    let err = entry.build(postgresql::build).setup().await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Transient, "{err}");
}

/// two instances and 50 messages, one pool; with `pool_max_size: 1` one pool is one
/// server-side connection, two pools would be two.
#[tokio::test]
async fn two_instances_and_fifty_messages_use_one_pool() {
    let pool = admin().await;
    let (table, _cleanup) = table();
    let app = unique("wc_app");
    let conn = connection(json!({"pool_min_size": 1, "pool_max_size": 1}));
    let shared = SharedClients::new();
    // The application name tells this test's connections apart from the others'.
    let mut conn = conn;
    let with_app = format!("{}?application_name={app}", url());
    conn["connection_string"] = Value::from(with_app);
    let a = Entry::new("postgresql", json!({"table": table}))
        .connection("db", conn.clone())
        .shared(&shared);
    let b = Entry::new("postgresql", json!({"table": table}))
        .connection("db", conn)
        .shared(&shared);
    let (a, b) = (a.build(postgresql::build), b.build(postgresql::build));
    a.setup().await.unwrap();
    b.setup().await.unwrap();
    for i in 0..25 {
        a.process(&delivery(&format!("a{i}"), payload(i)))
            .await
            .unwrap();
        b.process(&delivery(&format!("b{i}"), payload(i)))
            .await
            .unwrap();
    }
    let rows: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM \"{table}\""))
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 50);
    assert_eq!(shared.live().await, 1);
    let connections: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1")
            .bind(&app)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(connections, 1, "one pooled connection for 50 messages");
    a.teardown().await;
    b.process(&delivery("after", payload(0))).await.unwrap();
    b.teardown().await;
    assert_eq!(shared.live().await, 0);
}
