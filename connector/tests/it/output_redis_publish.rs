//! `redis_publish` against a real Redis (`TEST_REDIS_URL`, default `redis://127.0.0.1:6379`):
//! the published envelope is received by a subscriber, both configuration styles work,
//! password authentication works, and the error kinds and client sharing hold.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use webhook_connector::output::shared::SharedClients;
use webhook_connector::output::{ErrorCategory, ErrorKind, redis_publish};

use crate::sinks::{Entry, closed_port, delivery, env_or, payload, require_server, unique};

pub fn redis_url() -> String {
    env_or("TEST_REDIS_URL", "redis://127.0.0.1:6379")
}

/// `host` and `port` of the test server.
pub fn redis_host_port() -> (String, u16) {
    let url = redis_url();
    let rest = url.split("://").nth(1).unwrap_or("127.0.0.1:6379");
    let hostport = rest.split(['/', '?']).next().unwrap_or_default();
    let hostport = hostport.rsplit('@').next().unwrap_or_default();
    let (host, port) = hostport.rsplit_once(':').unwrap_or((hostport, "6379"));
    (host.to_owned(), port.parse().unwrap_or(6379))
}

pub async fn admin() -> redis::aio::MultiplexedConnection {
    let (host, port) = redis_host_port();
    require_server("TEST_REDIS_URL", &format!("{host}:{port}")).await;
    redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Subscribes to `channel` and returns the next `n` messages published there.
async fn subscribe(channel: &str) -> redis::aio::PubSub {
    let mut pubsub = redis::Client::open(redis_url())
        .unwrap()
        .get_async_pubsub()
        .await
        .unwrap();
    pubsub.subscribe(channel).await.unwrap();
    pubsub
}

async fn next_message(pubsub: &mut redis::aio::PubSub) -> Value {
    let msg = tokio::time::timeout(Duration::from_secs(5), pubsub.on_message().next())
        .await
        .expect("a message within 5 s")
        .expect("stream open");
    serde_json::from_str(&msg.get_payload::<String>().unwrap()).unwrap()
}

/// A Redis ACL user that exists for one test; deleted on drop.
pub struct AclUser {
    pub name: String,
    pub password: String,
}

impl AclUser {
    pub async fn create() -> Self {
        let user = AclUser {
            name: unique("wc_user"),
            password: "p@ss/w%rd".to_owned(),
        };
        let mut conn = admin().await;
        let _: () = redis::cmd("ACL")
            .arg("SETUSER")
            .arg(&user.name)
            .arg("on")
            .arg(format!(">{}", user.password))
            .arg("~*")
            .arg("&*")
            .arg("+@all")
            .query_async(&mut conn)
            .await
            .unwrap();
        user
    }

    /// Connections the server has open for this user.
    pub async fn connections(&self) -> usize {
        let mut conn = admin().await;
        let list: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query_async(&mut conn)
            .await
            .unwrap();
        list.lines()
            .filter(|l| l.contains(&format!(" user={} ", self.name)))
            .count()
    }
}

impl Drop for AclUser {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Best effort: the user only ever has a random name.
        if let Ok(client) = redis::Client::open(redis_url())
            && let Ok(mut conn) = client.get_connection()
        {
            let _: Result<(), _> = redis::cmd("ACL").arg("DELUSER").arg(&name).query(&mut conn);
        }
    }
}

fn connection_entry() -> Value {
    let (host, port) = redis_host_port();
    json!({"type": "redis", "host": host, "port": port.to_string()})
}

#[tokio::test]
async fn publishes_the_envelope_to_the_channel_of_module_config() {
    let _ = admin().await;
    let channel = unique("wc_pub");
    let mut sub = subscribe(&channel).await;
    let entry = Entry::new("redis_publish", json!({"channel": channel}))
        .connection("cache", connection_entry());
    let out = entry.build(redis_publish::build);
    out.setup().await.unwrap();
    out.process(&delivery("msg_pub_1", payload(1)))
        .await
        .unwrap();
    let got = next_message(&mut sub).await;
    assert_eq!(
        got,
        json!({
            "payload": payload(1),
            "headers": {"content-type": "application/json", "x-event": "order.created"},
            "message_id": "msg_pub_1",
            "webhook_id": "orders",
        })
    );
    out.teardown().await;
}

/// the original's webhook-level `redis` object and `redis.channel` are honoured.
#[tokio::test]
async fn the_webhook_level_redis_object_and_channel_are_honoured() {
    let _ = admin().await;
    let (host, port) = redis_host_port();
    let channel = unique("wc_legacy");
    let mut sub = subscribe(&channel).await;
    let entry = Entry::new("redis_publish", json!({}))
        .webhook(json!({"module": "redis_publish", "redis": {"host": host, "port": port, "channel": channel}}));
    let out = entry.build(redis_publish::build);
    out.setup().await.unwrap();
    out.process(&delivery("msg_legacy", payload(2)))
        .await
        .unwrap();
    assert_eq!(next_message(&mut sub).await["message_id"], "msg_legacy");
}

/// Zero subscribers still counts as success: pub/sub keeps nothing.
#[tokio::test]
async fn publishing_without_subscribers_succeeds() {
    let _ = admin().await;
    let entry = Entry::new("redis_publish", json!({"channel": unique("wc_nobody")}))
        .connection("cache", connection_entry());
    let out = entry.build(redis_publish::build);
    out.process(&delivery("msg_nobody", payload(3)))
        .await
        .unwrap();
}

/// password authentication (with a password that needs no escaping here but
/// would in a URL), and 50 messages from two instances over one server-side connection.
#[tokio::test]
async fn instances_on_one_connection_share_one_authenticated_client() {
    let user = AclUser::create().await;
    let (host, port) = redis_host_port();
    let channel = unique("wc_auth");
    let mut sub = subscribe(&channel).await;
    let shared = SharedClients::new();
    let conn = json!({"type": "redis", "host": host, "port": port,
                      "username": user.name, "password": user.password});
    let a = Entry::new("redis_publish", json!({"channel": channel}))
        .connection("cache", conn.clone())
        .shared(&shared);
    let b = Entry::new("redis_publish", json!({"channel": channel}))
        .connection("cache", conn)
        .shared(&shared);
    let (a, b) = (a.build(redis_publish::build), b.build(redis_publish::build));
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
    for _ in 0..50 {
        next_message(&mut sub).await;
    }
    assert_eq!(shared.live().await, 1);
    assert_eq!(
        user.connections().await,
        1,
        "one connection for 50 messages"
    );
    a.teardown().await;
    assert_eq!(shared.live().await, 1, "b still holds the client");
    b.process(&delivery("after", payload(0))).await.unwrap();
    b.teardown().await;
    assert_eq!(shared.live().await, 0);
}

#[tokio::test]
async fn a_wrong_password_is_unavailable_auth() {
    let user = AclUser::create().await;
    let (host, port) = redis_host_port();
    let entry = Entry::new("redis_publish", json!({})).connection(
        "cache",
        json!({"type": "redis", "host": host, "port": port,
               "username": user.name, "password": "wrong"}),
    );
    let err = entry.build(redis_publish::build).setup().await.unwrap_err();
    assert_eq!(
        (err.kind, err.category),
        (ErrorKind::Unavailable, ErrorCategory::Auth),
        "{err}"
    );
    assert!(!err.message.contains("wrong"), "no secret in {err}");
}

#[tokio::test]
async fn a_closed_port_is_transient_connection() {
    let port = closed_port().await;
    let entry = Entry::new("redis_publish", json!({})).connection(
        "cache",
        json!({"type": "redis", "host": "127.0.0.1", "port": port}),
    );
    let out = entry.build(redis_publish::build);
    let err = out.setup().await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Transient, "{err}");
    assert_eq!(err.category, ErrorCategory::Connection, "{err}");
    let err = out.process(&delivery("m", payload(0))).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Transient, "{err}");
}

#[tokio::test]
async fn wrong_types_are_load_errors_naming_the_path_and_unknown_keys_warnings() {
    let entry = Entry::new("redis_publish", json!({"channel": 5, "colour": "red"}))
        .connection("cache", json!({"type": "redis", "port": "sixty"}));
    let problems = entry.refused(redis_publish::build);
    let all = problems.errors.join("\n");
    assert!(
        all.contains("webhooks.json: test.module-config.channel"),
        "{all}"
    );
    assert!(all.contains("connections.json: cache.port"), "{all}");
    assert!(
        problems
            .warnings
            .iter()
            .any(|w| w.contains("module-config.colour")),
        "{problems:?}"
    );
}
