//! `nats` against a real nats-server (`TEST_NATS_URL`, default `nats://127.0.0.1:4222`, with
//! JetStream): a subscriber receives the message and its headers after the flush; JetStream
//! acks and drops a redelivery by `Nats-Msg-Id`; a nats-server with a password, started by the
//! test, refuses a wrong one (`Unavailable`) and counts one connection for two instances.
//! NKey users over TLS and a user JWT from a credentials file: nats-servers started by the test
//! with key pairs, JWTs and certificates made by the test.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use webhook_connector::output::shared::SharedClients;
use webhook_connector::output::{ErrorCategory, ErrorKind, nats};

use crate::private_server::{Pki, PrivateServer, binary};
use crate::sinks::{Entry, closed_port, delivery, env_or, payload, require_server, unique};

fn url() -> String {
    env_or("TEST_NATS_URL", "nats://127.0.0.1:4222")
}

async fn client() -> async_nats::Client {
    let u = url();
    require_server(
        "TEST_NATS_URL",
        u.split("://").nth(1).unwrap_or("127.0.0.1:4222"),
    )
    .await;
    async_nats::connect(u)
        .await
        .expect("connect to TEST_NATS_URL")
}

/// Publishes message `id` (payload `n`) through `out` and returns what `sub` received, after
/// checking it carries that payload.
async fn published_and_read_back(
    out: &dyn webhook_connector::output::Output,
    sub: &mut async_nats::Subscriber,
    id: &str,
    n: u64,
) -> async_nats::Message {
    out.process(&delivery(id, payload(n))).await.unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&msg.payload).unwrap(),
        payload(n)
    );
    msg
}

#[tokio::test]
async fn core_publish_reaches_a_subscriber_with_the_id_headers() {
    let nc = client().await;
    let subject = format!("wc.{}", unique("s"));
    let mut sub = nc.subscribe(subject.clone()).await.unwrap();
    nc.flush().await.unwrap();
    let entry = Entry::new("nats", json!({"subject": subject, "forward_headers": true}))
        .connection("bus", json!({"type": "nats", "url": url()}));
    let out = entry.build(nats::build);
    out.setup().await.unwrap();
    let msg = published_and_read_back(out.as_ref(), &mut sub, "msg_nats", 1).await;
    let headers = msg.headers.unwrap();
    assert_eq!(
        headers.get("Webhook-Message-Id").map(|v| v.as_str()),
        Some("msg_nats")
    );
    assert_eq!(
        headers.get("Webhook-Id").map(|v| v.as_str()),
        Some("orders")
    );
    assert_eq!(
        headers.get("x-event").map(|v| v.as_str()),
        Some("order.created")
    );
    assert!(
        headers.get("Nats-Msg-Id").is_none(),
        "core NATS has no dedup header"
    );
}

#[tokio::test]
async fn jetstream_acks_and_drops_a_redelivery_by_message_id() {
    let nc = client().await;
    let js = async_nats::jetstream::new(nc);
    let name = unique("WC");
    let subject = format!("wcjs.{name}");
    let mut stream = js
        .create_stream(async_nats::jetstream::stream::Config {
            name: name.clone(),
            subjects: vec![subject.clone()],
            ..Default::default()
        })
        .await
        .unwrap();
    let entry = Entry::new("nats", json!({"subject": subject, "jetstream": true}))
        .connection("bus", json!({"type": "nats", "url": url()}));
    let out = entry.build(nats::build);
    out.setup().await.unwrap();
    let d = delivery("msg_js", payload(2));
    out.process(&d).await.unwrap();
    out.process(&d).await.unwrap();
    out.process(&delivery("msg_js_2", payload(3)))
        .await
        .unwrap();
    let info = stream.info().await.unwrap();
    assert_eq!(info.state.messages, 2, "the redelivery was deduplicated");
    let first = stream.get_raw_message(1).await.unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&first.payload).unwrap(),
        payload(2)
    );
    js.delete_stream(&name).await.unwrap();
}

/// JetStream without a stream for the subject: no responders, `Transient` as the spec says.
#[tokio::test]
async fn jetstream_without_a_stream_is_transient() {
    let _ = client().await;
    let entry = Entry::new(
        "nats",
        json!({"subject": format!("wcnone.{}", unique("x")), "jetstream": true}),
    )
    .connection("bus", json!({"type": "nats", "url": url()}));
    let err = entry
        .build(nats::build)
        .process(&delivery("m", payload(0)))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Transient, "{err}");
}

#[tokio::test]
async fn a_closed_port_is_transient() {
    let port = closed_port().await;
    let entry = Entry::new("nats", json!({"subject": "a.b"})).connection(
        "bus",
        json!({"type": "nats", "url": format!("nats://127.0.0.1:{port}")}),
    );
    let err = entry.build(nats::build).setup().await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Transient, "{err}");
}

#[test]
fn wildcard_subjects_are_load_errors() {
    for subject in ["a.*", "a.>", "a..b", "a b"] {
        let entry = Entry::new("nats", json!({"subject": subject}));
        let p = entry.refused(nats::build);
        assert!(p.errors[0].contains("module-config.subject"), "{p:?}");
    }
}

/// A nats-server with a user and password and a monitoring port, stopped on drop.
struct AuthServer {
    child: std::process::Child,
    port: u16,
    monitor: u16,
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn auth_server() -> AuthServer {
    let (port, monitor) = (closed_port().await, closed_port().await);
    let binary = [
        "/usr/sbin/nats-server",
        "/usr/bin/nats-server",
        "nats-server",
    ]
    .into_iter()
    .find(|b| !b.starts_with('/') || std::path::Path::new(b).exists())
    .unwrap_or("nats-server");
    let child = std::process::Command::new(binary)
        .args([
            "-a",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-m",
            &monitor.to_string(),
        ])
        .args(["--user", "hook", "--pass", "right"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("nats-server is needed for the credential test");
    let server = AuthServer {
        child,
        port,
        monitor,
    };
    for _ in 0..50 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return server;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the test's nats-server did not open port {port}");
}

#[tokio::test]
async fn a_wrong_password_is_unavailable_and_instances_share_one_connection() {
    let server = auth_server().await;
    let conn = |pass: &str| {
        json!({"type": "nats", "url": format!("nats://127.0.0.1:{}", server.port),
               "user": "hook", "password": pass})
    };
    let bad = Entry::new("nats", json!({"subject": "a.b"})).connection("bus", conn("wrong"));
    let err = bad.build(nats::build).setup().await.unwrap_err();
    assert_eq!(
        (err.kind, err.category),
        (ErrorKind::Unavailable, ErrorCategory::Auth),
        "{err}"
    );

    let shared = SharedClients::new();
    let entries = [0, 1].map(|_| {
        Entry::new("nats", json!({"subject": "a.b"}))
            .connection("bus", conn("right"))
            .shared(&shared)
    });
    let outs = entries.each_ref().map(|e| e.build(nats::build));
    for i in 0..50u64 {
        outs[(i % 2) as usize]
            .process(&delivery(&format!("m{i}"), payload(i)))
            .await
            .unwrap();
    }
    // The server counts a read buffer's messages after answering the flush's PING in it, so
    // its statistics may trail the last PONG by a moment: poll until they settle.
    let url = format!("http://127.0.0.1:{}/connz", server.monitor);
    let mut connz = Value::Null;
    for _ in 0..100 {
        connz = reqwest::get(&url).await.unwrap().json().await.unwrap();
        if connz["connections"][0]["in_msgs"] == 50 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(connz["num_connections"], 1, "{connz}");
    assert_eq!(connz["connections"][0]["out_msgs"], 0);
    assert_eq!(connz["connections"][0]["in_msgs"], 50, "{connz}");
}

fn nats_binary() -> String {
    binary(
        "nats-server",
        &["/usr/sbin/nats-server", "/usr/bin/nats-server"],
    )
}

/// A nats-server run with the configuration `conf` (written into `dir`).
async fn configured_server(dir: &std::path::Path, port: u16, conf: &str) -> PrivateServer {
    let path = dir.join(format!("nats-{port}.conf"));
    std::fs::write(&path, format!("listen: \"127.0.0.1:{port}\"\n{conf}")).unwrap();
    let mut command = std::process::Command::new(nats_binary());
    command.arg("-c").arg(&path);
    PrivateServer::start(command, port).await
}

/// A nats-server with TLS (`pki`'s server certificate) that admits only the NKey user `user`.
async fn nkey_tls_server(pki: &Pki, user: &nkeys::KeyPair) -> PrivateServer {
    let port = PrivateServer::free_port().await;
    let conf = format!(
        "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n}}\n\
         authorization {{\n  users = [ {{ nkey: \"{}\" }} ]\n}}\n",
        pki.file("server.pem"),
        pki.file("server.key"),
        user.public_key(),
    );
    configured_server(pki.path("").as_path(), port, &conf).await
}

#[tokio::test]
async fn an_nkey_user_over_tls_publishes_and_a_tls_subscriber_reads_back() {
    let pki = Pki::new();
    let user = nkeys::KeyPair::new_user();
    let seed = user.seed().unwrap();
    let server = nkey_tls_server(&pki, &user).await;
    let url = format!("nats://127.0.0.1:{}", server.port);
    let nc = async_nats::ConnectOptions::with_nkey(seed.clone())
        .require_tls(true)
        .add_root_certificates(pki.path("ca.pem"))
        .connect(&url)
        .await
        .unwrap();
    let subject = format!("wc.{}", unique("nkey"));
    let mut sub = nc.subscribe(subject.clone()).await.unwrap();
    nc.flush().await.unwrap();
    let entry = Entry::new("nats", json!({"subject": subject})).connection(
        "bus",
        json!({"type": "nats", "url": url, "nkey_seed": seed, "tls": true,
               "tls_ca_cert_file": pki.file("ca.pem")}),
    );
    let out = entry.build(nats::build);
    out.setup().await.unwrap();
    published_and_read_back(out.as_ref(), &mut sub, "msg_nkey", 4).await;
    out.teardown().await;
}

#[tokio::test]
async fn a_wrong_nkey_seed_is_unavailable_auth_and_an_untrusted_certificate_unavailable() {
    let pki = Pki::new();
    let user = nkeys::KeyPair::new_user();
    let server = nkey_tls_server(&pki, &user).await;
    let url = format!("nats://127.0.0.1:{}", server.port);
    let stranger = nkeys::KeyPair::new_user().seed().unwrap();
    let bad = Entry::new("nats", json!({"subject": "a.b"})).connection(
        "bus",
        json!({"type": "nats", "url": url, "nkey_seed": stranger, "tls": true,
               "tls_ca_cert_file": pki.file("ca.pem")}),
    );
    let err = bad.build(nats::build).setup().await.unwrap_err();
    assert_eq!(
        (err.kind, err.category),
        (ErrorKind::Unavailable, ErrorCategory::Auth),
        "{err}"
    );
    assert!(!err.message.contains(&stranger), "{err}");
    let other = Pki::new();
    let untrusted = Entry::new("nats", json!({"subject": "a.b"})).connection(
        "bus",
        json!({"type": "nats", "url": url, "nkey_seed": user.seed().unwrap(), "tls": true,
               "tls_ca_cert_file": other.file("ca.pem")}),
    );
    let err = untrusted.build(nats::build).setup().await.unwrap_err();
    assert_eq!(
        (err.kind, err.category),
        (ErrorKind::Unavailable, ErrorCategory::Connection),
        "{err}"
    );
}

#[test]
fn nkey_and_creds_settings_are_checked_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let not_creds = dir.path().join("not.creds");
    std::fs::write(&not_creds, "hello").unwrap();
    let account_seed = nkeys::KeyPair::new_account().seed().unwrap();
    let user_seed = nkeys::KeyPair::new_user().seed().unwrap();
    for (conn, path) in [
        (
            json!({"type": "nats", "nkey_seed": "SUNOTASEED"}),
            "bus.nkey_seed",
        ),
        (
            json!({"type": "nats", "nkey_seed": account_seed}),
            "bus.nkey_seed",
        ),
        (
            json!({"type": "nats", "creds_file": not_creds.display().to_string()}),
            "bus.creds_file",
        ),
        (
            json!({"type": "nats", "creds_file": dir.path().join("missing").display().to_string()}),
            "bus.creds_file",
        ),
        (
            json!({"type": "nats", "nkey_seed": user_seed, "token": "t"}),
            "bus.user",
        ),
    ] {
        let entry = Entry::new("nats", json!({"subject": "a.b"})).connection("bus", conn.clone());
        let p = entry.refused(nats::build);
        assert!(p.errors.iter().any(|e| e.contains(path)), "{conn}: {p:?}");
        assert!(!format!("{p:?}").contains(&user_seed), "{p:?}");
    }
}

/// A compact JWT of `claims` signed by `signer` the way NATS signs them (`ed25519-nkey`).
fn nats_jwt(signer: &nkeys::KeyPair, subject: &str, name: &str, nats: Value) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(r#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({
        "jti": unique("jti").to_uppercase(),
        "iat": now,
        "iss": signer.public_key(),
        "name": name,
        "sub": subject,
        "nats": nats,
    });
    let body = b64.encode(claims.to_string());
    let signed = format!("{header}.{body}");
    let signature = signer.sign(signed.as_bytes()).unwrap();
    format!("{signed}.{}", b64.encode(signature))
}

#[tokio::test]
async fn a_user_jwt_from_a_creds_file_publishes_and_is_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let operator = nkeys::KeyPair::new_operator();
    let account = nkeys::KeyPair::new_account();
    let user = nkeys::KeyPair::new_user();
    let operator_jwt = nats_jwt(
        &operator,
        &operator.public_key(),
        "test-operator",
        json!({"type": "operator", "version": 2}),
    );
    let unlimited = json!({"subs": -1, "data": -1, "payload": -1, "imports": -1,
                           "exports": -1, "wildcards": true, "conn": -1, "leaf": -1});
    let account_jwt = nats_jwt(
        &operator,
        &account.public_key(),
        "test-account",
        json!({"type": "account", "version": 2, "limits": unlimited,
               "default_permissions": {"pub": {}, "sub": {}}}),
    );
    let user_jwt = nats_jwt(
        &account,
        &user.public_key(),
        "test-user",
        json!({"type": "user", "version": 2, "pub": {}, "sub": {},
               "subs": -1, "data": -1, "payload": -1}),
    );
    let creds = format!(
        "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n\
         -----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n",
        user.seed().unwrap()
    );
    let creds_file = dir.path().join("user.creds");
    std::fs::write(&creds_file, &creds).unwrap();
    let port = PrivateServer::free_port().await;
    let conf = format!(
        "operator: \"{operator_jwt}\"\nresolver: MEMORY\nresolver_preload: {{\n  {}: \"{account_jwt}\"\n}}\n",
        account.public_key()
    );
    let server = configured_server(dir.path(), port, &conf).await;
    let url = format!("nats://127.0.0.1:{}", server.port);
    let nc = async_nats::ConnectOptions::with_credentials(&creds)
        .unwrap()
        .connect(&url)
        .await
        .unwrap();
    let subject = format!("wc.{}", unique("creds"));
    let mut sub = nc.subscribe(subject.clone()).await.unwrap();
    nc.flush().await.unwrap();
    let entry = Entry::new("nats", json!({"subject": subject})).connection(
        "bus",
        json!({"type": "nats", "url": url,
               "creds_file": creds_file.display().to_string()}),
    );
    let out = entry.build(nats::build);
    out.setup().await.unwrap();
    published_and_read_back(out.as_ref(), &mut sub, "msg_creds", 6).await;
    // A user the account did not sign: refused.
    let stranger = nkeys::KeyPair::new_user();
    let forged = creds.replace(&user.seed().unwrap(), &stranger.seed().unwrap());
    let forged_file = dir.path().join("forged.creds");
    std::fs::write(&forged_file, forged).unwrap();
    let bad = Entry::new("nats", json!({"subject": "a.b"})).connection(
        "bus",
        json!({"type": "nats", "url": url,
               "creds_file": forged_file.display().to_string()}),
    );
    let err = bad.build(nats::build).setup().await.unwrap_err();
    assert_eq!(
        (err.kind, err.category),
        (ErrorKind::Unavailable, ErrorCategory::Auth),
        "{err}"
    );
    out.teardown().await;
}
