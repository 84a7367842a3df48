//! `mysql` against a real MariaDB (`TEST_MYSQL_URL`, default `mysql://root@127.0.0.1:3306/test`):
//! rows read back, idempotent redelivery, a duplicate on another unique key is `Permanent`, the
//! shared pool survives one user's teardown, one pool for 50 messages, and the
//! error-number mapping.

use serde_json::{Value, json};
use sqlx::Row;
use sqlx::mysql::MySqlPool;
use webhook_connector::output::shared::SharedClients;
use webhook_connector::output::{ErrorCategory, ErrorKind, mysql};

use crate::sinks::{
    Cleanup, Entry, closed_port, delivery, env_or, payload, require_server, unique,
};

fn url() -> String {
    env_or("TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")
}

fn host_port() -> (String, u16) {
    let u = url();
    let hostport = u
        .split('@')
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or("127.0.0.1:3306")
        .to_owned();
    let (host, port) = hostport.split_once(':').unwrap_or((&hostport, "3306"));
    (host.to_owned(), port.parse().unwrap_or(3306))
}

async fn admin() -> MySqlPool {
    let (host, port) = host_port();
    require_server("TEST_MYSQL_URL", &format!("{host}:{port}")).await;
    MySqlPool::connect(&url())
        .await
        .expect("connect to TEST_MYSQL_URL")
}

/// A database user for one test, dropped with its table at the end.
struct Account {
    user: String,
    password: String,
    table: String,
    _cleanup: Cleanup,
}

async fn account(pool: &MySqlPool) -> Account {
    let user = unique("wc_u");
    let password = "p@ss/w%rd".to_owned();
    let table = unique("wc_my");
    for stmt in [
        format!("CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'"),
        format!("GRANT ALL ON test.* TO '{user}'@'%'"),
    ] {
        sqlx::raw_sql(&stmt).execute(pool).await.unwrap();
    }
    let (u, t) = (user.clone(), table.clone());
    let cleanup = Cleanup::new(move || async move {
        if let Ok(pool) = MySqlPool::connect(&url()).await {
            let _ = sqlx::raw_sql(&format!("DROP TABLE IF EXISTS `{t}`"))
                .execute(&pool)
                .await;
            let _ = sqlx::raw_sql(&format!("DROP USER IF EXISTS '{u}'@'%'"))
                .execute(&pool)
                .await;
        }
    });
    Account {
        user,
        password,
        table,
        _cleanup: cleanup,
    }
}

impl Account {
    fn connection(&self) -> Value {
        let (host, port) = host_port();
        json!({"type": "mysql", "host": host, "port": port.to_string(), "database": "test",
               "user": self.user, "password": self.password, "pool_max_size": 1})
    }

    async fn connections(&self, pool: &MySqlPool) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = ?")
            .bind(&self.user)
            .fetch_one(pool)
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn json_mode_stores_the_message_once_even_when_redelivered() {
    let pool = admin().await;
    let acct = account(&pool).await;
    let entry =
        Entry::new("mysql", json!({"table": acct.table})).connection("db", acct.connection());
    let out = entry.build(mysql::build);
    out.setup().await.unwrap();
    let d = delivery("msg_my_1", payload(1));
    out.process(&d).await.unwrap();
    out.process(&d).await.unwrap();
    let rows = sqlx::query(&format!(
        "SELECT id, webhook_id, CAST(payload AS CHAR) AS payload, \
         CAST(`timestamp` AS CHAR) AS ts FROM `{}`",
        acct.table
    ))
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 1, "a redelivery inserts no second row");
    assert_eq!(rows[0].get::<String, _>("webhook_id"), "orders");
    assert_eq!(rows[0].get::<String, _>("id").len(), 36);
    assert_eq!(rows[0].get::<String, _>("ts"), "2026-01-02 03:04:05.123456");
    let stored: Value = serde_json::from_str(&rows[0].get::<String, _>("payload")).unwrap();
    assert_eq!(stored, payload(1));
}

fn order_fields() -> Value {
    json!({"fields": {
        "order": {"column": "order_no", "type": "integer", "constraints": ["UNIQUE"]},
        "paid": {"type": "boolean"},
    }})
}

/// Only a duplicate id is a redelivery; a duplicate on another unique key is bad data.
#[tokio::test]
async fn relational_rows_and_a_duplicate_on_another_key_is_permanent() {
    let pool = admin().await;
    let acct = account(&pool).await;
    let entry = Entry::new(
        "mariadb",
        json!({"table": acct.table, "storage_mode": "relational", "schema": order_fields()}),
    )
    .connection("db", acct.connection());
    let out = entry.build(mysql::build);
    out.setup().await.unwrap();
    out.process(&delivery("m1", json!({"order": 5, "paid": true})))
        .await
        .unwrap();
    let row = sqlx::query(&format!("SELECT order_no, paid FROM `{}`", acct.table))
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        (row.get::<i32, _>("order_no"), row.get::<bool, _>("paid")),
        (5, true)
    );
    let err = out
        .process(&delivery("m2", json!({"order": 5})))
        .await
        .unwrap_err();
    assert_eq!(
        (err.kind, err.category),
        (ErrorKind::Permanent, ErrorCategory::InvalidData),
        "{err}"
    );
    let err = out
        .process(&delivery("m3", json!({"order": "five"})))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Permanent, "{err}");
}

/// two instances share one pool; one `teardown` does not close it under the
/// other; 50 messages use one server-side connection.
#[tokio::test]
async fn the_shared_pool_survives_one_users_teardown() {
    let pool = admin().await;
    let acct = account(&pool).await;
    let shared = SharedClients::new();
    let a = Entry::new("mysql", json!({"table": acct.table}))
        .connection("db", acct.connection())
        .shared(&shared);
    let b = Entry::new("mysql", json!({"table": acct.table}))
        .connection("db", acct.connection())
        .shared(&shared);
    let (a, b) = (a.build(mysql::build), b.build(mysql::build));
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
    assert_eq!(
        acct.connections(&pool).await,
        1,
        "one connection for 50 messages"
    );
    a.teardown().await;
    b.process(&delivery("after-teardown", payload(0)))
        .await
        .unwrap();
    let rows: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM `{}`", acct.table))
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 51);
    b.teardown().await;
    assert_eq!(shared.live().await, 0);
}

#[tokio::test]
async fn a_wrong_password_is_unavailable_auth() {
    let pool = admin().await;
    let acct = account(&pool).await;
    let mut conn = acct.connection();
    conn["password"] = Value::from("wrong");
    let entry = Entry::new("mysql", json!({"table": acct.table})).connection("db", conn);
    let err = entry.build(mysql::build).setup().await.unwrap_err();
    assert_eq!(
        (err.kind, err.category),
        (ErrorKind::Unavailable, ErrorCategory::Auth),
        "{err}"
    );
}

#[tokio::test]
async fn a_closed_port_is_transient() {
    let port = closed_port().await;
    let entry = Entry::new("mysql", json!({})).connection(
        "db",
        json!({"type": "mysql", "host": "127.0.0.1", "port": port, "database": "test"}),
    );
    let err = entry.build(mysql::build).setup().await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Transient, "{err}");
}

#[test]
fn host_is_required_and_the_mysql_schema_draws_a_warning() {
    let missing = Entry::new("mysql", json!({})).connection("db", json!({"type": "mysql"}));
    let problems = missing.refused(mysql::build);
    assert!(
        problems.errors[0].contains("connections.json: db.host: missing field"),
        "{problems:?}"
    );
    let system =
        Entry::new("mysql", json!({})).connection("db", json!({"type": "mysql", "host": "db"}));
    let mut p = webhook_connector::config::Problems::default();
    assert!(mysql::build(&system.settings(), &mut p).is_some());
    assert!(
        p.warnings.iter().any(|w| w.contains("system schema")),
        "{p:?}"
    );
}
