//! `redis_publish` against a real Redis (`TEST_REDIS_URL`, default `redis://127.0.0.1:6379`):
//! the published envelope is received by a subscriber, both configuration styles work,
//! password authentication works, and the error kinds and client sharing hold. TLS:
//! a redis-server started by the test with a TLS port only and certificates made by the test.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use webhook_connector::output::shared::SharedClients;
use webhook_connector::output::{ErrorCategory, ErrorKind, redis_publish};

use crate::private_server::{Pki, PrivateServer, binary};
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
    // Every connection error names the address it tried (issue 23).
    let address = format!("127.0.0.1:{port}");
    assert!(err.message.contains(&address), "{err}");
    let err = out.process(&delivery("m", payload(0))).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Transient, "{err}");
    assert!(err.message.contains(&address), "{err}");
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

/// A redis-server with only a TLS port, `pki`'s server certificate and, with
/// `client_certificates`, clients required to present one signed by `pki`'s CA. Nothing is
/// saved; the working directory is `pki`'s temporary one.
pub async fn tls_redis(pki: &Pki, client_certificates: bool) -> PrivateServer {
    let port = PrivateServer::free_port().await;
    let mut command =
        std::process::Command::new(binary("redis-server", &["/usr/bin/redis-server"]));
    command
        .args(["--port", "0", "--bind", "127.0.0.1", "--tls-port"])
        .arg(port.to_string())
        .arg("--tls-cert-file")
        .arg(pki.path("server.pem"))
        .arg("--tls-key-file")
        .arg(pki.path("server.key"))
        .arg("--tls-ca-cert-file")
        .arg(pki.path("ca.pem"))
        .args([
            "--tls-auth-clients",
            if client_certificates { "yes" } else { "no" },
        ])
        .args(["--save", "", "--appendonly", "no", "--dir"])
        .arg(pki.path(""));
    PrivateServer::start(command, port).await
}

/// A subscriber on `channel` over TLS, trusting `pki`'s CA and presenting its client certificate.
async fn tls_subscribe(pki: &Pki, port: u16, channel: &str) -> redis::aio::PubSub {
    webhook_connector::tls::install_default_provider();
    let client = redis::Client::build_with_tls(
        format!("rediss://127.0.0.1:{port}"),
        redis::TlsCertificates {
            client_tls: Some(redis::ClientTlsConfig {
                client_cert: std::fs::read(pki.path("client.pem")).unwrap(),
                client_key: std::fs::read(pki.path("client.key")).unwrap(),
            }),
            root_cert: Some(std::fs::read(pki.path("ca.pem")).unwrap()),
        },
    )
    .unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.subscribe(channel).await.unwrap();
    pubsub
}

#[tokio::test]
async fn tls_fields_and_rediss_url_with_a_client_certificate_are_read_back_over_tls() {
    let pki = Pki::new();
    let server = tls_redis(&pki, true).await;
    let channel = unique("tls");
    let mut sub = tls_subscribe(&pki, server.port, &channel).await;
    let files = |mut c: Value| {
        c["tls_ca_cert_file"] = json!(pki.file("ca.pem"));
        c["tls_cert_file"] = json!(pki.file("client.pem"));
        c["tls_key_file"] = json!(pki.file("client.key"));
        c
    };
    let connections = [
        files(json!({"type": "redis", "host": "127.0.0.1", "port": server.port, "tls": true})),
        files(json!({"type": "redis", "url": format!("rediss://127.0.0.1:{}/0", server.port)})),
    ];
    for (i, conn) in connections.into_iter().enumerate() {
        let entry =
            Entry::new("redis_publish", json!({"channel": channel})).connection("cache", conn);
        let out = entry.build(redis_publish::build);
        out.setup().await.unwrap();
        let id = format!("msg_tls_{i}");
        out.process(&delivery(&id, payload(i as u64)))
            .await
            .unwrap();
        let got = next_message(&mut sub).await;
        assert_eq!(got["message_id"], json!(id));
        assert_eq!(got["payload"], payload(i as u64));
        out.teardown().await;
    }
}

#[tokio::test]
async fn an_untrusted_server_certificate_or_a_missing_client_certificate_is_unavailable() {
    let pki = Pki::new();
    let other = Pki::new();
    let server = tls_redis(&pki, true).await;
    let base = json!({"type": "redis", "host": "127.0.0.1", "port": server.port, "tls": true});
    let mut wrong_ca = base.clone();
    wrong_ca["tls_ca_cert_file"] = json!(other.file("ca.pem"));
    wrong_ca["tls_cert_file"] = json!(pki.file("client.pem"));
    wrong_ca["tls_key_file"] = json!(pki.file("client.key"));
    let mut no_client_cert = base.clone();
    no_client_cert["tls_ca_cert_file"] = json!(pki.file("ca.pem"));
    // No CA file: the system roots, which do not know the test's CA.
    for conn in [wrong_ca, no_client_cert, base] {
        let entry =
            Entry::new("redis_publish", json!({"channel": "c"})).connection("cache", conn.clone());
        let out = entry.build(redis_publish::build);
        let err = out.setup().await.unwrap_err();
        assert_eq!(
            (err.kind, err.category),
            (ErrorKind::Unavailable, ErrorCategory::Connection),
            "{conn}: {err}"
        );
    }
}

#[test]
fn tls_settings_are_checked_at_load() {
    let pki = Pki::new();
    for (conn, path) in [
        (
            json!({"type": "redis", "url": "redis://127.0.0.1:6379", "tls": true}),
            "cache.tls",
        ),
        (
            json!({"type": "redis", "tls": true, "tls_cert_file": pki.file("client.pem")}),
            "cache.tls_key_file",
        ),
        (
            json!({"type": "redis", "tls": true, "tls_ca_cert_file": pki.file("missing.pem")}),
            "cache.tls_ca_cert_file",
        ),
    ] {
        let entry = Entry::new("redis_publish", json!({})).connection("cache", conn.clone());
        let p = entry.refused(redis_publish::build);
        assert!(p.errors.iter().any(|e| e.contains(path)), "{conn}: {p:?}");
    }
    let plain = Entry::new("redis_publish", json!({})).connection(
        "cache",
        json!({"type": "redis", "tls_ca_cert_file": pki.file("ca.pem")}),
    );
    let mut problems = webhook_connector::config::Problems::default();
    assert!(redis_publish::build(&plain.settings(), &mut problems).is_some());
    assert!(
        problems
            .warnings
            .iter()
            .any(|w| w.contains("tls_ca_cert_file")),
        "{problems:?}"
    );
}
