//! `mqtt` against a real Mosquitto (`TEST_MQTT_URL`, default `mqtt://127.0.0.1:1883`): a
//! subscriber receives what QoS 1 publishes after `PUBACK`, concurrent instances with generated
//! client ids stay connected, topics are checked at load, and refused credentials (a
//! Mosquitto with a password file, started by the test) are `Unavailable`. TLS: Mosquittos with
//! a TLS listener and certificates made by the test; messages are read back over TLS.

use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use serde_json::{Value, json};
use webhook_connector::output::shared::SharedClients;
use webhook_connector::output::{ErrorCategory, ErrorKind, mqtt};

use crate::private_server::{Pki, PrivateServer, binary, insecure_client_config};
use crate::sinks::{Entry, closed_port, delivery, env_or, payload, require_server, unique};

fn host_port() -> (String, u16) {
    let url = env_or("TEST_MQTT_URL", "mqtt://127.0.0.1:1883");
    let hostport = url
        .split("://")
        .nth(1)
        .unwrap_or("127.0.0.1:1883")
        .trim_end_matches('/');
    let (host, port) = hostport.split_once(':').unwrap_or((hostport, "1883"));
    (host.to_owned(), port.parse().unwrap_or(1883))
}

fn connection() -> Value {
    let (host, port) = host_port();
    json!({"type": "mqtt", "host": host, "port": port})
}

/// A subscriber on `topic`; returns the receiver of message bodies.
async fn subscribe(topic: &str) -> tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>)> {
    let (host, port) = host_port();
    require_server("TEST_MQTT_URL", &format!("{host}:{port}")).await;
    subscribe_with(MqttOptions::new(unique("sub"), host, port), topic).await
}

/// A subscriber on `topic` connected with `options`.
async fn subscribe_with(
    options: MqttOptions,
    topic: &str,
) -> tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>)> {
    let (client, mut eventloop) = AsyncClient::new(options, 16);
    client.subscribe(topic, QoS::AtLeastOnce).await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
    let mut subscribed_tx = Some(subscribed_tx);
    tokio::spawn(async move {
        let _client = client;
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(t) = subscribed_tx.take() {
                        let _ = t.send(());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = tx.send((p.topic.clone(), p.payload.to_vec()));
                }
                Ok(_) => {}
                Err(e) => {
                    eprintln!("test subscriber: {e}");
                    return;
                }
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(5), subscribed)
        .await
        .unwrap()
        .unwrap();
    rx
}

async fn next(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>)>,
) -> (String, Vec<u8>) {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("message within 5 s")
        .unwrap()
}

#[tokio::test]
async fn qos1_publish_reaches_a_subscriber() {
    let topic = format!("wc/{}", unique("t"));
    let mut rx = subscribe(&topic).await;
    let entry =
        Entry::new("mqtt", json!({"topic": topic, "qos": 1})).connection("broker", connection());
    let out = entry.build(mqtt::build);
    out.setup().await.unwrap();
    out.process(&delivery("msg_mqtt", payload(1)))
        .await
        .unwrap();
    let (t, body) = next(&mut rx).await;
    assert_eq!(t, topic);
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap(), payload(1));
    out.teardown().await;
}

#[tokio::test]
async fn prefix_shelly_format_and_qos_0_and_2() {
    let topic = format!("wc/{}", unique("s"));
    let mut rx = subscribe(&format!("{topic}/#")).await;
    for qos in [0, 2] {
        let entry = Entry::new(
            "mqtt",
            json!({"topic_prefix": topic, "topic": "dev", "qos": qos,
                   "shelly_gen2_format": true, "device_id": "shelly-1"}),
        )
        .connection("broker", connection());
        let out = entry.build(mqtt::build);
        out.process(&delivery("m", json!({"on": true})))
            .await
            .unwrap();
        let (t, body) = next(&mut rx).await;
        assert_eq!(t, format!("{topic}/dev"));
        assert_eq!(
            serde_json::from_slice::<Value>(&body).unwrap(),
            json!({"id": "shelly-1", "source": "webhook", "params": {"on": true}})
        );
    }
}

/// two connection entries (generated, distinct client ids) and 20 concurrent messages
/// each: nobody is disconnected by an id clash, and every message is acknowledged.
#[tokio::test]
async fn concurrent_instances_with_generated_client_ids_stay_connected() {
    let topic = format!("wc/{}", unique("c"));
    let mut rx = subscribe(&topic).await;
    let shared = SharedClients::new();
    let a = Entry::new("mqtt", json!({"topic": topic}))
        .connection("one", connection())
        .shared(&shared);
    let mut second = connection();
    second["keepalive"] = json!(30); // another entry: another session
    let b = Entry::new("mqtt", json!({"topic": topic}))
        .connection("two", second)
        .shared(&shared);
    let c = Entry::new("mqtt", json!({"topic": topic}))
        .connection("one", connection())
        .shared(&shared);
    let outs = [
        a.build(mqtt::build),
        b.build(mqtt::build),
        c.build(mqtt::build),
    ];
    for o in &outs {
        o.setup().await.unwrap();
    }
    assert_eq!(shared.live().await, 2, "entries one and two; c shares one");
    let tasks = (0..60u64).map(|i| {
        let o = &outs[(i % 3) as usize];
        let d = delivery(&format!("m{i}"), payload(i));
        async move { o.process(&d).await }
    });
    for r in futures_util::future::join_all(tasks).await {
        r.unwrap();
    }
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..60 {
        let (_, body) = next(&mut rx).await;
        seen.insert(
            serde_json::from_slice::<Value>(&body).unwrap()["order"]
                .as_u64()
                .unwrap(),
        );
    }
    assert_eq!(seen.len(), 60);
}

#[test]
fn wildcards_and_missing_topics_are_load_errors() {
    for mc in [
        json!({"topic": "a/+/b"}),
        json!({"topic": "$SYS/x"}),
        json!({}),
    ] {
        let entry = Entry::new("mqtt", mc.clone()).connection("broker", connection());
        let p = entry.refused(mqtt::build);
        assert!(
            p.errors.iter().any(|e| e.contains("module-config.topic")),
            "{mc}: {p:?}"
        );
    }
    let legacy = Entry::new("mqtt", json!({}))
        .connection("broker", connection())
        .webhook(json!({"module": "mqtt", "topic": "legacy/topic"}));
    legacy.build(mqtt::build);
}

#[tokio::test]
async fn a_closed_port_is_transient_connection() {
    let port = closed_port().await;
    let entry = Entry::new("mqtt", json!({"topic": "x"})).connection(
        "broker",
        json!({"type": "mqtt", "host": "127.0.0.1", "port": port}),
    );
    let out = entry.build(mqtt::build);
    let err = out.setup().await.unwrap_err();
    assert_eq!(
        (err.kind, err.category),
        (ErrorKind::Transient, ErrorCategory::Connection),
        "{err}"
    );
    let err = out.process(&delivery("m", payload(0))).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Transient, "{err}");
}

/// A Mosquitto with a password file on a free port, stopped on drop.
struct AuthBroker {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for AuthBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn auth_broker() -> AuthBroker {
    let dir = tempfile::tempdir().unwrap();
    let passwd = dir.path().join("passwd");
    let made = std::process::Command::new("mosquitto_passwd")
        .args(["-c", "-b"])
        .arg(&passwd)
        .args(["hook", "right"])
        .status()
        .expect("mosquitto_passwd (package mosquitto) is needed for the credential test");
    assert!(made.success());
    let port = closed_port().await;
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {}\n",
            passwd.display()
        ),
    )
    .unwrap();
    let child = std::process::Command::new("mosquitto")
        .arg("-c")
        .arg(&conf)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("mosquitto is needed for the credential test");
    let broker = AuthBroker {
        child,
        port,
        _dir: dir,
    };
    for _ in 0..50 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return broker;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the test's mosquitto did not open port {port}");
}

#[tokio::test]
async fn refused_credentials_are_unavailable_and_good_ones_deliver() {
    let broker = auth_broker().await;
    let conn = |password: &str| {
        json!({"type": "mqtt", "host": "127.0.0.1", "port": broker.port,
               "username": "hook", "password": password})
    };
    let bad = Entry::new("mqtt", json!({"topic": "t"})).connection("b", conn("wrong"));
    let err = bad.build(mqtt::build).setup().await.unwrap_err();
    assert_eq!(
        (err.kind, err.category),
        (ErrorKind::Unavailable, ErrorCategory::Auth),
        "{err}"
    );
    assert!(!err.message.contains("wrong"), "{err}");
    let good = Entry::new("mqtt", json!({"topic": "t"})).connection("b", conn("right"));
    let out = good.build(mqtt::build);
    out.setup().await.unwrap();
    out.process(&delivery("m", payload(0))).await.unwrap();
}

/// A Mosquitto with one TLS listener using `pki`'s `server.pem`, `server.key` and `ca.pem`;
/// with `require_certificate`, clients must present a certificate signed by `ca.pem`.
async fn tls_broker(pki: &Pki, require_certificate: bool) -> PrivateServer {
    let port = PrivateServer::free_port().await;
    let conf = pki.path(&format!("mosquitto-{port}.conf"));
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\ncafile {}\ncertfile {}\n\
             keyfile {}\nrequire_certificate {require_certificate}\n",
            pki.file("ca.pem"),
            pki.file("server.pem"),
            pki.file("server.key"),
        ),
    )
    .unwrap();
    let mut command = std::process::Command::new(binary("mosquitto", &["/usr/sbin/mosquitto"]));
    command.arg("-c").arg(&conf);
    PrivateServer::start(command, port).await
}

/// A subscriber over TLS with `config`.
async fn tls_subscribe(
    port: u16,
    config: std::sync::Arc<rustls::ClientConfig>,
    topic: &str,
) -> tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>)> {
    let mut options = MqttOptions::new(unique("sub"), "127.0.0.1", port);
    options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(config)));
    subscribe_with(options, topic).await
}

#[tokio::test]
async fn tls_with_a_private_ca_and_a_client_certificate_is_read_back_over_tls() {
    let pki = Pki::new();
    let broker = tls_broker(&pki, true).await;
    let topic = format!("wc/{}", unique("tls"));
    let mut rx = tls_subscribe(broker.port, pki.client_config(), &topic).await;
    let entry = Entry::new("mqtt", json!({"topic": topic, "qos": 1})).connection(
        "broker",
        json!({"type": "mqtt", "host": "127.0.0.1", "port": broker.port, "tls": true,
               "tls_ca_cert_file": pki.file("ca.pem"),
               "tls_cert_file": pki.file("client.pem"),
               "tls_key_file": pki.file("client.key")}),
    );
    let out = entry.build(mqtt::build);
    out.setup().await.unwrap();
    out.process(&delivery("msg_tls", payload(7))).await.unwrap();
    let (t, body) = next(&mut rx).await;
    assert_eq!(t, topic);
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap(), payload(7));
    out.teardown().await;
}

#[tokio::test]
async fn an_untrusted_server_certificate_or_a_missing_client_certificate_is_unavailable() {
    let pki = Pki::new();
    let broker = tls_broker(&pki, true).await;
    let other = Pki::new();
    let conn = |extra: Value| {
        let mut c = json!({"type": "mqtt", "host": "127.0.0.1", "port": broker.port,
                           "tls": true});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let cases = [
        // Another CA: the client refuses the server's certificate.
        json!({"tls_ca_cert_file": other.file("ca.pem"),
               "tls_cert_file": pki.file("client.pem"), "tls_key_file": pki.file("client.key")}),
        // The right CA, no client certificate: the broker refuses the handshake.
        json!({"tls_ca_cert_file": pki.file("ca.pem")}),
    ];
    for extra in cases {
        let entry = Entry::new("mqtt", json!({"topic": "t"})).connection("b", conn(extra.clone()));
        let out = entry.build(mqtt::build);
        let err = out.setup().await.unwrap_err();
        assert_eq!(
            (err.kind, err.category),
            (ErrorKind::Unavailable, ErrorCategory::Connection),
            "{extra}: {err}"
        );
        assert!(err.message.contains("TLS"), "{err}");
        let err = out.process(&delivery("m", payload(0))).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Unavailable, "{err}");
    }
}

#[tokio::test]
async fn tls_insecure_accepts_a_self_signed_certificate_that_tls_alone_refuses() {
    let pki = Pki::self_signed();
    let broker = tls_broker(&pki, false).await;
    let topic = format!("wc/{}", unique("insecure"));
    let mut rx = tls_subscribe(broker.port, insecure_client_config(), &topic).await;
    let conn = |insecure: bool| {
        json!({"type": "mqtt", "host": "127.0.0.1", "port": broker.port, "tls": true,
               "tls_insecure": insecure})
    };
    let strict = Entry::new("mqtt", json!({"topic": topic})).connection("b", conn(false));
    let err = strict.build(mqtt::build).setup().await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unavailable, "{err}");
    let insecure = Entry::new("mqtt", json!({"topic": topic})).connection("b", conn(true));
    let out = insecure.build(mqtt::build);
    out.process(&delivery("m", payload(3))).await.unwrap();
    let (_, body) = next(&mut rx).await;
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap(), payload(3));
}

#[test]
fn tls_files_are_checked_at_load_and_ignored_without_tls() {
    let pki = Pki::new();
    let conn = |extra: Value| {
        let mut c = json!({"type": "mqtt", "host": "127.0.0.1", "tls": true});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    for (extra, path) in [
        (
            json!({"tls_cert_file": pki.file("client.pem")}),
            "tls_key_file",
        ),
        (
            json!({"tls_key_file": pki.file("client.key")}),
            "tls_cert_file",
        ),
        (
            json!({"tls_ca_cert_file": pki.file("missing.pem")}),
            "tls_ca_cert_file",
        ),
        (
            json!({"tls_ca_cert_file": pki.file("client.key")}),
            "tls_ca_cert_file",
        ),
    ] {
        let entry = Entry::new("mqtt", json!({"topic": "t"})).connection("b", conn(extra.clone()));
        let mut p = webhook_connector::config::Problems::default();
        assert!(mqtt::build(&entry.settings(), &mut p).is_none(), "{extra}");
        assert!(
            p.errors.iter().any(|e| e.contains(&format!("b.{path}"))),
            "{extra}: {p:?}"
        );
    }
    let plain = Entry::new("mqtt", json!({"topic": "t"})).connection(
        "b",
        json!({"type": "mqtt", "host": "127.0.0.1", "tls_insecure": true}),
    );
    let mut problems = webhook_connector::config::Problems::default();
    assert!(mqtt::build(&plain.settings(), &mut problems).is_some());
    assert!(
        problems.warnings.iter().any(|w| w.contains("tls_insecure")),
        "{problems:?}"
    );
}
